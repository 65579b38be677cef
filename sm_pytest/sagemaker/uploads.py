"""Getting code and data into S3, once: content-addressed uploads that are skipped when the
same bytes are already there.

    s3://<bucket>/<prefix>/source/<sha256[:16]>/sourcedir.tar.gz
    s3://<bucket>/<prefix>/datasets/<folder>-<hash[:12]>/...            (the channel)
    s3://<bucket>/<prefix>/datasets/<folder>-<hash[:12]>.manifest.json  (written last)

The dataset's completion marker sits beside its prefix, not inside it: SageMaker copies
everything under a channel's S3 prefix into /opt/ml/input/data/<channel>, so a marker
inside would show up among the training files. The channel URI ends in '/', so the
manifest (and any ``<name>-<hash>x`` sibling) is never part of the channel.

``s3`` is a boto3 S3 client made by the caller; this module imports boto3 only in
``upload_dataset_command``.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from sm_pytest.run.contract import SNAPSHOT_IGNORE
from sm_pytest.sagemaker.aws import error_code, s3_key, s3_uri

__all__ = [
    "MANIFEST_SUFFIX",
    "dataset_hash",
    "pack_source_dir",
    "resolve_inputs",
    "upload_dataset",
    "upload_dataset_command",
    "upload_source",
]

SOURCE_ARCHIVE = "sourcedir.tar.gz"
MANIFEST_SUFFIX = ".manifest.json"


# --- walking a folder ----------------------------------------------------------------------


def _ignored(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _walk(root: Path, ignore: tuple[str, ...] = ()) -> Iterator[tuple[str, Path, bool]]:
    """(posix relative path, real path, is_dir) in sorted order, symlinks followed (as the
    local snapshot's shutil.copytree does), each real directory visited once."""
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
            # anything else (a dangling link, a socket) is skipped

    yield from visit(root, "")


# --- source code ---------------------------------------------------------------------------


def pack_source_dir(source_dir: Path) -> tuple[bytes, str]:
    """A reproducible sourcedir.tar.gz of ``source_dir`` and the sha256 of its bytes.

    Entries are sorted, relative to the folder (``train.py``, ``pkg/mod.py``, as the SDK
    packs them), with mtime 0, uid/gid 0, no owner names, and modes normalised to 0644
    (0755 for directories and executables); gzip's header carries no name and mtime 0.
    ``__pycache__``, ``.git`` and ``*.pyc`` are left out, as the local snapshot leaves them
    out. Same content, same bytes, same hash.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source_dir {source_dir} is not a directory")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path, is_dir in _walk(source_dir, SNAPSHOT_IGNORE):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            data = path.read_bytes()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _head(s3, bucket: str, key: str) -> dict | None:
    """HeadObject, or None when the object is not there (404). A 403 is also None: without
    s3:ListBucket S3 answers 403 for a missing key, and the upload will say if it is not
    allowed either."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound", "403", "Forbidden"):
            return None
        raise


def upload_source(s3, source_dir: Path, bucket: str, prefix: str) -> str:
    """Upload ``source_dir`` as sourcedir.tar.gz unless the same archive is already there;
    return its s3:// URI."""
    data, digest = pack_source_dir(source_dir)
    key = s3_key(prefix, "source", digest[:16], SOURCE_ARCHIVE)
    head = _head(s3, bucket, key)
    if head is None or head.get("Metadata", {}).get("sha256") != digest:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/gzip",
                      Metadata={"sha256": digest})
    return s3_uri(bucket, key)


# --- datasets ------------------------------------------------------------------------------

_hash_cache: dict[tuple, str] = {}
_hash_lock = threading.Lock()


def _dataset_files(folder: Path) -> list[tuple[str, Path]]:
    folder = Path(folder)
    if folder.is_file():
        return [(folder.name, folder)]
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {folder} is neither a folder nor a file")
    files = [(rel, path) for rel, path, is_dir in _walk(folder) if not is_dir]
    if not files:
        raise ValueError(f"dataset folder {folder} holds no files")
    return files


def file_sha256(path: Path) -> bytes:
    """The sha256 digest of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def dataset_hash(folder: Path) -> str:
    """sha256 over every file's relative path, size and content, in sorted order: the same
    files give the same hash wherever the folder is and whatever the timestamps say.

    Memoised per process on (path, size, mtime) of every file, so many runs sharing one
    dataset read it once.
    """
    return _files_hash(folder, _dataset_files(folder))


def _files_hash(folder: Path, files: list[tuple[str, Path]]) -> str:
    signature = tuple((rel, st.st_size, st.st_mtime_ns)
                      for rel, path in files for st in [path.stat()])
    cache_key = (str(Path(folder).resolve()), signature)
    with _hash_lock:
        if cache_key in _hash_cache:
            return _hash_cache[cache_key]
    total = hashlib.sha256()
    for (rel, path), (_, size, _) in zip(files, signature, strict=True):
        total.update(f"{len(rel.encode())}:{rel}:{size}:".encode())
        total.update(file_sha256(path))
    digest = total.hexdigest()
    with _hash_lock:
        _hash_cache[cache_key] = digest
    return digest


def _dataset_name(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-.")
    return name[:60] or "dataset"


def upload_dataset(s3, folder: Path, bucket: str, prefix: str) -> str:
    """Upload every file of ``folder`` under ``datasets/<name>-<hash[:12]>/`` unless its
    manifest says an earlier upload finished; return the channel URI (ending in '/')."""
    folder = Path(folder)
    files = _dataset_files(folder)
    digest = _files_hash(folder, files)
    base = s3_key(prefix, "datasets", f"{_dataset_name(folder)}-{digest[:12]}")
    manifest_key = base + MANIFEST_SUFFIX
    head = _head(s3, bucket, manifest_key)
    if head is None or head.get("Metadata", {}).get("sha256") != digest:
        for rel, path in files:
            s3.upload_file(str(path), bucket, f"{base}/{rel}")
        manifest = {"sha256": digest, "source": str(folder.resolve()),
                    "files": {rel: path.stat().st_size for rel, path in files}}
        s3.put_object(Bucket=bucket, Key=manifest_key, ContentType="application/json",
                      Body=json.dumps(manifest, indent=1, sort_keys=True).encode(),
                      Metadata={"sha256": digest})
    return s3_uri(bucket, base) + "/"


def resolve_input(s3, location: str, bucket: str, prefix: str) -> str:
    """A channel as an s3:// URI: an s3:// input as given, a local folder (or file)
    uploaded with upload_dataset."""
    location = str(location)
    if location.startswith("s3://"):
        return location
    return upload_dataset(s3, Path(location), bucket, prefix)


def resolve_inputs(s3, inputs: dict[str, str], bucket: str, prefix: str) -> dict[str, str]:
    return {channel: resolve_input(s3, inputs[channel], bucket, prefix)
            for channel in sorted(inputs)}


def upload_dataset_command(folder: Path, bucket: str, prefix: str = "sm-pytest",
                           region: str | None = None) -> str:
    """``sm-pytest upload-dataset``: upload ``folder`` once and return the s3:// URI to put
    in an experiment's ``inputs:``. Credentials, AWS_ENDPOINT_URL and the rest are boto3's."""
    import boto3

    s3 = boto3.Session(region_name=region).client("s3")
    return upload_dataset(s3, Path(folder), bucket, prefix)
