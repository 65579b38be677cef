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

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

from sm_pytest.run.hashing import dataset_files, dataset_hash, source_entries
from sm_pytest.sagemaker.aws import error_code, s3_key, s3_uri

__all__ = [
    "MANIFEST_SUFFIX",
    "pack_source_dir",
    "resolve_inputs",
    "upload_dataset",
    "upload_dataset_command",
    "upload_source",
]

SOURCE_ARCHIVE = "sourcedir.tar.gz"
MANIFEST_SUFFIX = ".manifest.json"


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
        for entry in source_entries(source_dir):
            info = tarfile.TarInfo(entry.rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.mode = 0o755 if entry.executable else 0o644
            data = entry.path.read_bytes()
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

# A dataset's folder name as one segment of its S3 key: letters, digits and '._-', all in
# S3's safe key characters. Apart from run.artifacts.folder_name on purpose: that one keeps
# '=' and '+' (a run id's `lr=0.1`), which S3 lists as needing special handling, and joins
# with '_'. Each is pinned by what users already have (local folders, uploaded datasets).
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _dataset_name(folder: Path) -> str:
    name = _KEY_UNSAFE.sub("-", Path(folder).resolve().name).strip("-.")
    return name[:60] or "dataset"


def upload_dataset(s3, folder: Path, bucket: str, prefix: str) -> str:
    """Upload every file of ``folder`` under ``datasets/<name>-<hash[:12]>/`` unless its
    manifest says an earlier upload finished; return the channel URI (ending in '/')."""
    folder = Path(folder)
    files = dataset_files(folder)
    digest = dataset_hash(folder, files)
    base = s3_key(prefix, "datasets", f"{_dataset_name(folder)}-{digest[:12]}")
    manifest_key = base + MANIFEST_SUFFIX
    head = _head(s3, bucket, manifest_key)
    if head is None or head.get("Metadata", {}).get("sha256") != digest:
        for entry in files:
            s3.upload_file(str(entry.path), bucket, f"{base}/{entry.rel}")
        manifest = {"sha256": digest, "source": str(folder.resolve()),
                    "files": {entry.rel: entry.path.stat().st_size for entry in files}}
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
