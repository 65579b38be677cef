"""Content hashes of folders, and the one walk over a folder's files that everything shares.

Three readers must see the same files of a training code folder: the local snapshot
(``contract`` copies it into the code dir), the packed ``sourcedir.tar.gz``
(``sagemaker.uploads``) and the run fingerprint. ``walk`` and ``SNAPSHOT_IGNORE`` are that
selection: sorted, links followed (as ``shutil.copytree`` follows them), each real folder
visited once, anything neither a file nor a folder (a dangling link, a socket) skipped.

Two hashes are made of it, each memoised per process on every entry's (relative path, size,
mtime_ns): 1000 runs sharing one dataset read its bytes once and afterwards only stat its
files. A file rewritten with the same size inside the file system's timestamp granularity
(a few ms) is not seen as changed within the same process.

- ``source_hash``: the code as it is shipped: each entry's relative path, the executable bit
  of each file and its bytes; folders count too (an empty one is packed).
- ``dataset_hash``: every file's relative path, size and bytes; the S3 name of an uploaded
  dataset and the fingerprint of a local input.

Their byte formats are part of the run cache's fingerprints and of existing S3 keys: a
change to either invalidates users' caches and re-uploads their data.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SNAPSHOT_IGNORE",
    "Entry",
    "dataset_files",
    "dataset_hash",
    "file_sha256",
    "source_entries",
    "source_hash",
    "walk",
]

# What a source snapshot leaves out: caches and version control, never what the script runs.
SNAPSHOT_IGNORE = ("__pycache__", ".git", "*.pyc")


def _ignored(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def walk(root: Path, ignore: tuple[str, ...] = ()) -> Iterator[tuple[str, Path, bool]]:
    """(posix relative path, path, is_dir) in sorted order, symlinks followed (as the local
    snapshot's shutil.copytree does), each real directory visited once; names matching an
    ``ignore`` pattern are skipped with everything under them."""
    seen: set[str] = set()

    def visit(folder: Path, rel: str) -> Iterator[tuple[str, Path, bool]]:
        real = os.path.realpath(folder)
        if real in seen:
            return
        seen.add(real)
        for name in sorted(os.listdir(folder)):
            if _ignored(name, ignore):
                continue
            path = folder / name
            child = f"{rel}/{name}" if rel else name
            if path.is_dir():
                yield child, path, True
                yield from visit(path, child)
            elif path.is_file():
                yield child, path, False

    yield from visit(Path(root), "")


def file_sha256(path: Path) -> bytes:
    """The sha256 digest of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


@dataclass(frozen=True)
class Entry:
    """One walked entry with what the memo compares (size and mtime_ns are 0 for a folder)."""

    rel: str
    path: Path
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    executable: bool = False

    @classmethod
    def of_file(cls, rel: str, path: Path) -> Entry:
        st = path.stat()
        return cls(rel, path, False, st.st_size, st.st_mtime_ns, os.access(path, os.X_OK))

    @property
    def signature(self) -> tuple:
        return (self.rel, self.is_dir, self.size, self.mtime_ns, self.executable)


_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def _memoised_hash(scheme: str, root: Path, entries: Sequence[Entry],
                   header: Callable[[Entry], bytes]) -> str:
    """sha256 over ``header(entry)`` and, for a file, its bytes, entry by entry; remembered
    for this ``scheme``, folder and every entry's signature."""
    key = (scheme, str(Path(root).resolve()), tuple(e.signature for e in entries))
    with _memo_lock:
        cached = _memo.get(key)
    if cached is not None:
        return cached
    total = hashlib.sha256()
    for entry in entries:
        total.update(header(entry))
        if not entry.is_dir:
            total.update(file_sha256(entry.path))
    digest = total.hexdigest()
    with _memo_lock:
        _memo[key] = digest
    return digest


# --- training code ---------------------------------------------------------------------------


def source_entries(source_dir: Path) -> list[Entry]:
    """Every entry of a source folder as it is snapshotted, packed and fingerprinted."""
    return [Entry(rel, path, True) if is_dir else Entry.of_file(rel, path)
            for rel, path, is_dir in walk(source_dir, SNAPSHOT_IGNORE)]


def _source_header(entry: Entry) -> bytes:
    name = entry.rel.encode("utf-8")
    if entry.is_dir:
        return b"d%d:%s\n" % (len(name), name)
    return b"f%d:%s:%d:" % (len(name), name, int(entry.executable))


def source_hash(source_dir: Path) -> str:
    """sha256 over the training code as it is shipped: every entry of the folder (as packed by
    ``pack_source_dir``), its relative path, its executable bit and its bytes."""
    return _memoised_hash("source", source_dir, source_entries(source_dir), _source_header)


# --- datasets ----------------------------------------------------------------------------------


def dataset_files(folder: Path) -> list[Entry]:
    """The files of a dataset: a single file as itself, a folder's files (no ignore list:
    data is data); FileNotFoundError when it is neither, ValueError when it holds none."""
    folder = Path(folder)
    if folder.is_file():
        return [Entry.of_file(folder.name, folder)]
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {folder} is neither a folder nor a file")
    files = [Entry.of_file(rel, path) for rel, path, is_dir in walk(folder) if not is_dir]
    if not files:
        raise ValueError(f"dataset folder {folder} holds no files")
    return files


def _dataset_header(entry: Entry) -> bytes:
    return f"{len(entry.rel.encode())}:{entry.rel}:{entry.size}:".encode()


def dataset_hash(folder: Path, files: Sequence[Entry] | None = None) -> str:
    """sha256 over every file's relative path, size and content, in sorted order: the same
    files give the same hash wherever the folder is and whatever the timestamps say.

    ``files``: ``dataset_files(folder)`` when the caller already listed them."""
    if files is None:
        files = dataset_files(folder)
    return _memoised_hash("dataset", folder, files, _dataset_header)
