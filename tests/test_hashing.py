"""The one folder walker and the memoised folder hashes (sm_pytest/run/hashing.py).

The digests are pinned: they name uploaded datasets in S3 and make up every run cache's
fingerprints, so a change here re-uploads users' data and invalidates their caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sm_pytest.run import fingerprint, hashing

# Computed by the two hashers this module replaced (run/fingerprint.py and
# sagemaker/uploads.py before the house refactor) for the tree below.
SOURCE = "5b5e78cd55debf83de78c5535fb59b77dcb383beffffb187808e20c2ebb1de95"
DATASET = "e23df6173775017fc0fe464a1266cb67c3baa366e4ff7a2897b31b9f80d9bd2e"
ONE_FILE = "ea200278f041b84c072328b985e95bcb727506340c91ac851f7ed960839764c0"


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "train.py").write_text("print('hi')\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o755)
    (src / "pkg" / "model.py").write_text("X = 1\n")
    os.chmod(src / "pkg" / "model.py", 0o644)
    os.chmod(src / "train.py", 0o644)
    (src / "pkg" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (src / "stale.pyc").write_bytes(b"\0")
    (src / "empty").mkdir()
    (src / "données.txt").write_text("é")
    os.chmod(src / "données.txt", 0o644)
    os.symlink(src / "pkg", src / "again")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "train.bin").write_bytes(b"\x01" * 1000)
    (data / "sub" / "labels.csv").write_text("0\n1\n")
    hashing._memo.clear()
    return src, data


def test_walk_selects_sorts_follows_links_and_visits_each_folder_once(tree, tmp_path):
    src, _ = tree
    os.symlink(tmp_path / "nowhere", src / "dangling")
    walked = [(rel, is_dir) for rel, _, is_dir in hashing.walk(src, hashing.SNAPSHOT_IGNORE)]
    # `again` links to `pkg` and sorts first: pkg's files appear once, under the link's name.
    assert walked == [("again", True), ("again/model.py", False), ("données.txt", False),
                      ("empty", True), ("pkg", True), ("run.sh", False), ("train.py", False)]
    everything = [rel for rel, _, _ in hashing.walk(src)]
    assert "stale.pyc" in everything and "pkg/__pycache__" not in everything  # seen via again
    assert "again/__pycache__/model.cpython-311.pyc" in everything


def test_source_entries_carry_the_executable_bit(tree):
    src, _ = tree
    entries = {e.rel: e for e in hashing.source_entries(src)}
    assert entries["run.sh"].executable and not entries["train.py"].executable
    assert entries["empty"].is_dir and entries["empty"].size == 0
    assert entries["train.py"].size == len("print('hi')\n")


def test_digests_are_the_ones_users_already_have(tree):
    src, data = tree
    assert hashing.source_hash(src) == SOURCE
    assert hashing.dataset_hash(data) == DATASET
    assert hashing.dataset_hash(data / "train.bin") == ONE_FILE
    # Both callers use these very hashes (the upload's S3 key: tests/test_uploads.py).
    assert fingerprint.source_hash(src) == SOURCE


def test_the_same_content_elsewhere_hashes_the_same(tree, tmp_path):
    src, data = tree
    copy = shutil.copytree(data, tmp_path / "elsewhere")
    assert hashing.dataset_hash(copy) == DATASET
    (copy / "sub" / "labels.csv").rename(copy / "sub" / "labels2.csv")
    assert hashing.dataset_hash(copy) != DATASET  # paths count


def test_memo_reads_each_file_once_and_sees_changes(tree, monkeypatch):
    src, data = tree
    read: list[str] = []
    real = hashing.file_sha256

    def counting(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(hashing, "file_sha256", counting)
    first = hashing.dataset_hash(data)
    assert sorted(read) == ["labels.csv", "train.bin"]
    assert hashing.dataset_hash(data) == first and len(read) == 2  # only stat'ed again
    # The same folder under the other scheme is its own hash, not the memo's dataset entry.
    assert hashing.source_hash(data) != first
    read.clear()
    (data / "train.bin").write_bytes(b"\x02" * 1000)  # same size, new mtime
    st = (data / "train.bin").stat()
    os.utime(data / "train.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert hashing.dataset_hash(data) != first
    assert read == ["labels.csv", "train.bin"]


def test_executable_bit_changes_the_source_hash_only(tree):
    src, _ = tree
    os.chmod(src / "train.py", 0o755)
    assert hashing.source_hash(src) != SOURCE


def test_dataset_files_refuses_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a file"):
        hashing.dataset_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        hashing.dataset_files(tmp_path / "empty")


def test_given_files_are_not_listed_again(tree, monkeypatch):
    _, data = tree
    files = hashing.dataset_files(data)
    monkeypatch.setattr(hashing, "walk", lambda *a, **k: pytest.fail("walked twice"))
    assert hashing.dataset_hash(data, files) == DATASET


def _make_dataset(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "train-images.gz").write_bytes(os.urandom(2048))
    (root / "sub" / "labels.gz").write_bytes(b"labels")
    return root


def test_dataset_hash_is_stable_and_content_based(tmp_path):
    a = _make_dataset(tmp_path / "a")
    first = hashing.dataset_hash(a)
    assert first == hashing.dataset_hash(a)
    b = tmp_path / "b"
    b.mkdir()
    for rel in ("train-images.gz", "sub/labels.gz"):
        (b / rel).parent.mkdir(exist_ok=True)
        (b / rel).write_bytes((a / rel).read_bytes())
    os.utime(b / "sub" / "labels.gz", (5, 5))
    assert hashing.dataset_hash(b) == first  # location and timestamps do not matter
    (b / "sub" / "labels.gz").rename(b / "labels.gz")
    assert hashing.dataset_hash(b) != first  # paths do
    (a / "sub" / "labels.gz").write_bytes(b"labelz")
    assert hashing.dataset_hash(a) != first  # content does (the memo sees the change)
