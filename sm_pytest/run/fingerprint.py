"""What makes two runs the same training: a content hash of everything that can change the
model, and nothing that only changes how its metrics are judged.

    fingerprint_parts(run, backend="sagemaker", backend_settings={...})
        {"version": ..., "hyperparameters": ..., "entry_point": ..., "metric_definitions": ...,
         "source": ..., "input:training": ..., "backend": ...}     (each a sha256 hex digest)
    fingerprint(run, ...) == digest_parts(fingerprint_parts(run, ...))

Parts, so that a cache miss can say which one changed:

- ``hyperparameters``: the resolved values as canonical JSON (sorted keys, no spaces). A float
  is written in its shortest round-trip form, so ``0.1``, ``0.10`` and ``1.0e-1`` in YAML
  (all the same float) match. ``1`` and ``1.0`` do NOT match: the script receives ``--x 1``
  and ``--x 1.0``, and the SageMaker encoding keeps the type too. Strings are never read as
  numbers, for the same reason.
- ``entry_point`` and ``metric_definitions`` (name and regex, in name order).
- ``source``: the training code folder, with the very file selection that
  ``sagemaker.uploads.pack_source_dir`` packs and the local snapshot copies (``__pycache__``,
  ``.git`` and ``*.pyc`` left out, links followed): relative paths, the executable bit and
  the bytes. It hashes the content itself rather than the gzip archive, so a Python or zlib
  upgrade that changes archive bytes does not invalidate every cached run.
- ``input:<channel>``: a local folder (or file) by ``sagemaker.uploads.dataset_hash`` (relative
  paths, sizes, bytes; the hash used to name uploaded datasets); an ``s3://`` URI by the URI
  string itself (its objects are not read).
- ``backend``: the backend name and the caller's ``backend_settings`` (for SageMaker use
  ``sagemaker_backend_settings``: instance type and count, image versions, spot, volume,
  container environment).
- ``version``: this module's hashing scheme; bumping it invalidates every entry.

Not included: ``max_run`` and ``expect``. A longer time limit or a new threshold re-judges
the cached metrics instead of training again. Nor the experiment/run name: two runs with the
same content share one fingerprint.

Folder hashes are memoised per process on every file's (relative path, size, mtime_ns), so
1000 runs sharing one dataset read its bytes once and afterwards only stat its files. A file
rewritten with the same size inside the file system's timestamp granularity (a few ms) is
not seen as changed within the same process.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_pytest.run.contract import SNAPSHOT_IGNORE
from sm_pytest.sagemaker import uploads
from sm_pytest.spec.experiment import RunSpec

__all__ = [
    "FINGERPRINT_VERSION",
    "FingerprintError",
    "canonical_json",
    "digest_parts",
    "fingerprint",
    "fingerprint_parts",
    "sagemaker_backend_settings",
    "source_hash",
]

FINGERPRINT_VERSION = "1"
INPUT_PREFIX = "input:"


class FingerprintError(ValueError):
    """Something a run needs cannot be hashed (a missing folder, an unusable value)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(value: Any, where: str) -> Any:
    """Plain JSON types with a canonical form: dict keys as strings, tuples as lists, numpy
    scalars as Python ints and floats."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    raise FingerprintError(f"{where}: a value of type {type(value).__name__} cannot be"
                           " fingerprinted; use strings, numbers, booleans, lists or mappings")


def canonical_json(value: Any, where: str = "value") -> str:
    """One text for one value: sorted keys, no whitespace, floats in shortest round-trip form
    (``repr``), NaN and infinities as ``NaN`` / ``Infinity``."""
    return json.dumps(_normalise(value, where), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=True)


# --- folders -------------------------------------------------------------------------------

_source_cache: dict[tuple, str] = {}
_source_lock = threading.Lock()


def source_hash(source_dir: Path) -> str:
    """sha256 over the training code as it is shipped: every entry of the folder (as packed by
    ``pack_source_dir``), its relative path, its executable bit and its bytes."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FingerprintError(f"source_dir {source_dir} is not a folder; set 'source_dir' to"
                               " the folder holding the training code")
    entries = []
    for rel, path, is_dir in uploads._walk(source_dir, SNAPSHOT_IGNORE):
        if is_dir:
            entries.append((rel, True, 0, 0, False, path))
        else:
            st = path.stat()
            entries.append((rel, False, st.st_size, st.st_mtime_ns, os.access(path, os.X_OK),
                            path))
    key = (str(source_dir.resolve()), tuple(e[:5] for e in entries))
    with _source_lock:
        cached = _source_cache.get(key)
    if cached is not None:
        return cached
    total = hashlib.sha256()
    for rel, is_dir, _size, _mtime, executable, path in entries:
        name = rel.encode("utf-8")
        if is_dir:
            total.update(b"d%d:%s\n" % (len(name), name))
            continue
        total.update(b"f%d:%s:%d:" % (len(name), name, int(executable)))
        total.update(uploads.file_sha256(path))
    digest = total.hexdigest()
    with _source_lock:
        _source_cache[key] = digest
    return digest


def _input_hash(channel: str, location: str) -> str:
    if location.startswith("s3://"):
        return _sha256("s3:" + location)
    path = Path(location)
    if not path.exists():
        raise FingerprintError(f"input {channel!r}: {path} does not exist; fix the path in"
                               " 'inputs' or use an s3:// URI")
    try:
        return uploads.dataset_hash(path)
    except ValueError:  # an empty folder: nothing to read, one fixed hash
        return _sha256("empty-folder")


# --- the fingerprint -----------------------------------------------------------------------


def sagemaker_backend_settings(settings: Any) -> dict[str, Any]:
    """The settings of a ``sagemaker.settings.SageMakerSettings`` that can change what a job
    computes: the rest (role, bucket, max_run, max_wait, keep-alive, tags, parallelism) only
    changes where it runs, how long it may take, or what it costs."""
    return {
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "framework_version": settings.framework_version,
        "py_version": settings.py_version,
        "spot": settings.spot,
        "volume_size_gb": settings.volume_size_gb,
        "environment": dict(settings.environment),
    }


def fingerprint_parts(run: RunSpec, *, backend: str,
                      backend_settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Each part's own sha256 (see the module docstring), keys in sorted order.

    Raises FingerprintError when the source folder or a local input is missing or a value
    cannot be written as JSON.
    """
    definitions = sorted((d.name, d.regex) for d in run.metric_definitions)
    parts = {
        "version": _sha256(FINGERPRINT_VERSION),
        "hyperparameters": _sha256(canonical_json(run.hyperparameters, "hyperparameters")),
        "entry_point": _sha256(run.entry_point),
        "metric_definitions": _sha256(canonical_json(definitions, "metric_definitions")),
        "source": source_hash(run.source_dir),
        "backend": _sha256(canonical_json(
            {"backend": backend, "settings": dict(backend_settings or {})}, "backend_settings")),
    }
    for channel in sorted(run.inputs):
        parts[INPUT_PREFIX + channel] = _input_hash(channel, str(run.inputs[channel]))
    return dict(sorted(parts.items()))


def digest_parts(parts: Mapping[str, str]) -> str:
    """The fingerprint of already computed parts."""
    return _sha256(canonical_json(dict(parts), "parts"))


def fingerprint(run: RunSpec, *, backend: str,
                backend_settings: Mapping[str, Any] | None = None) -> str:
    """The run's fingerprint: a sha256 hex digest over all of ``fingerprint_parts``."""
    return digest_parts(fingerprint_parts(run, backend=backend,
                                          backend_settings=backend_settings))
