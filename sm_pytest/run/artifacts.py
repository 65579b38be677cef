"""Where a run's files go, and writing them so that nothing is lost or half-written.

    <root>/<experiment>/<run folder>/attempt-0001/
        hyperparameters.json  command.json  train.log  metrics.csv  result.json
        model/  output/  failure (if any)  ... plus the container tree the run saw

Nothing is ever overwritten: each run gets the next attempt folder, claimed with an atomic
mkdir so that pytest-xdist workers can never collide.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

# Keeps '=', '+' and case, so that a run id reads as itself (`lr=0.1,seed=2`): a folder may
# hold them, an AWS name may not. The names AWS sees are made by sagemaker.names (slug for
# experiments, lower case and '-' only) and a dataset's S3 key segment by sagemaker.uploads;
# they differ on purpose, and each is pinned by what users already have (folders, S3 keys,
# experiments), so none may change to match another.
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def folder_name(text: str) -> str:
    """A file-system-safe, still readable folder name for an experiment or run id."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "default"
    return cleaned[:120]


def run_dir_of(root: Path, experiment: str, run_folder: str) -> Path:
    return root / folder_name(experiment) / folder_name(run_folder)


def new_attempt_dir(root: Path, experiment: str, run_folder: str) -> Path:
    run_dir = run_dir_of(root, experiment, run_folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name.split("-")[1]) for p in run_dir.glob("attempt-*")
                if p.name.split("-")[1].isdigit()]
    number = max(existing, default=0) + 1
    while True:
        candidate = run_dir / f"attempt-{number:04d}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file beside it, synced, then renamed
    over it. A file that was there keeps its permissions; a new one gets 0644."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last `lines` lines of a log, read from the end so a huge log costs little."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, 256 * 1024)
            handle.seek(size - block)
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
