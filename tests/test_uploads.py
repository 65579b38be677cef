"""Content-addressed uploads of source code and datasets, against moto's S3."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from sm_pytest.run import hashing
from sm_pytest.sagemaker import uploads

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

BUCKET = "bkt"


def make_source(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o775)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (root / "pkg" / "stale.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "empty").mkdir()
    return root


def make_dataset(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "train-images.gz").write_bytes(os.urandom(2048))
    (root / "sub" / "labels.gz").write_bytes(b"labels")
    return root


@pytest.fixture
def s3(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.writes = []  # every PutObject / multipart upload, by key

        def count(params, **_):
            client.writes.append(params["Key"])

        for operation in ("PutObject", "CreateMultipartUpload"):
            client.meta.events.register(f"provide-client-params.s3.{operation}", count)
        yield client


def keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


# --- source --------------------------------------------------------------------------------


def test_pack_is_reproducible_and_clean(tmp_path):
    source = make_source(tmp_path / "a")
    data, digest = uploads.pack_source_dir(source)
    assert gzip.decompress(data)  # a valid gzip stream
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["empty", "pkg", "pkg/__init__.py", "pkg/model.py", "run.sh", "train.py"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["run.sh"] == 0o755 and modes["train.py"] == 0o644 and modes["pkg"] == 0o755

    # The same content elsewhere, written later, with other timestamps: the same bytes.
    copy = make_source(tmp_path / "b")
    os.utime(copy / "train.py", (1, 1))
    assert uploads.pack_source_dir(copy) == (data, digest)
    (copy / "train.py").write_text("print('changed')\n")
    assert uploads.pack_source_dir(copy)[1] != digest


def test_upload_source_skips_when_present(s3, tmp_path):
    source = make_source(tmp_path / "src")
    digest = uploads.pack_source_dir(source)[1]
    uri = uploads.upload_source(s3, source, BUCKET, "team/sm-pytest")
    assert uri == f"s3://{BUCKET}/team/sm-pytest/source/{digest[:16]}/sourcedir.tar.gz"
    assert len(s3.writes) == 1
    assert uploads.upload_source(s3, source, BUCKET, "team/sm-pytest") == uri
    assert len(s3.writes) == 1  # HeadObject found it: nothing written
    body = s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read()
    assert body == uploads.pack_source_dir(source)[0]
    (source / "train.py").write_text("print('v2')\n")
    assert uploads.upload_source(s3, source, BUCKET, "team/sm-pytest") != uri
    assert len(s3.writes) == 2


def test_upload_source_replaces_an_object_without_our_checksum(s3, tmp_path):
    source = make_source(tmp_path / "src")
    uri = uploads.upload_source(s3, source, BUCKET, "p")
    key = uri.split("/", 3)[3]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"garbage")
    s3.writes.clear()
    uploads.upload_source(s3, source, BUCKET, "p")
    assert s3.writes == [key]


# --- datasets ------------------------------------------------------------------------------


def test_upload_dataset_once_with_a_manifest_beside_the_channel(s3, tmp_path):
    folder = make_dataset(tmp_path / "mnist sample")
    digest = hashing.dataset_hash(folder)
    uri = uploads.upload_dataset(s3, folder, BUCKET, "sm-pytest")
    base = f"sm-pytest/datasets/mnist-sample-{digest[:12]}"
    assert uri == f"s3://{BUCKET}/{base}/"
    assert keys(s3) == [f"{base}.manifest.json", f"{base}/sub/labels.gz",
                        f"{base}/train-images.gz"]
    assert s3.writes[-1] == f"{base}.manifest.json"  # the marker comes last
    written = len(s3.writes)
    assert uploads.upload_dataset(s3, folder, BUCKET, "sm-pytest") == uri
    assert len(s3.writes) == written  # skipped entirely
    # Only the channel's files are under the channel prefix (what SageMaker downloads).
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{base}/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"{base}/sub/labels.gz",
                                                f"{base}/train-images.gz"]


def test_an_interrupted_dataset_upload_is_redone(s3, tmp_path):
    folder = make_dataset(tmp_path / "data")
    base = f"p/datasets/data-{hashing.dataset_hash(folder)[:12]}"
    s3.put_object(Bucket=BUCKET, Key=f"{base}/train-images.gz", Body=b"partial")
    s3.writes.clear()
    uploads.upload_dataset(s3, folder, BUCKET, "p")
    assert sorted(s3.writes) == sorted([f"{base}/train-images.gz", f"{base}/sub/labels.gz",
                                        f"{base}.manifest.json"])


def test_resolve_inputs_passes_s3_through_and_uploads_folders(s3, tmp_path):
    folder = make_dataset(tmp_path / "data")
    single = tmp_path / "one.csv"
    single.write_text("a,b\n")
    resolved = uploads.resolve_inputs(s3, {"training": str(folder),
                                           "test": "s3://elsewhere/test/",
                                           "extra": str(single)}, BUCKET, "p")
    assert resolved["test"] == "s3://elsewhere/test/"
    assert resolved["training"].startswith(f"s3://{BUCKET}/p/datasets/data-")
    assert resolved["extra"].startswith(f"s3://{BUCKET}/p/datasets/one.csv-")
    extra_prefix = resolved["extra"].split("/", 3)[3]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=extra_prefix)[
        "Contents"]] == [extra_prefix + "one.csv"]


def test_empty_or_missing_dataset_is_an_error(s3, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        uploads.upload_dataset(s3, tmp_path / "empty", BUCKET, "p")
    with pytest.raises(FileNotFoundError):
        uploads.upload_dataset(s3, tmp_path / "missing", BUCKET, "p")


def test_upload_dataset_command(s3, tmp_path):
    folder = make_dataset(tmp_path / "data")
    uri = uploads.upload_dataset_command(folder, BUCKET, "cli", region="us-east-1")
    assert uri.startswith(f"s3://{BUCKET}/cli/datasets/data-") and uri.endswith("/")
    assert any(k.startswith("cli/datasets/") for k in keys(s3))
