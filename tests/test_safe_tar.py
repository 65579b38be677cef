"""safe_extract refuses every archive that could write outside its destination, before
writing anything, and extracts good ones whole."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from sm_pytest.run.safe_tar import UnsafeArchiveError, safe_extract


def member(name: str, kind=tarfile.REGTYPE, data: bytes = b"", linkname: str = "",
           mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def archive(path: Path, *members) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def good(tmp_path: Path) -> Path:
    return archive(
        tmp_path / "model.tar.gz",
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("model.pt", data=b"weights"),
        member("code", tarfile.DIRTYPE, mode=0o755),
        member("code/inference.py", data=b"print(1)\n", mode=0o755),
        member("latest.pt", tarfile.SYMTYPE, linkname="model.pt"),
        member("code/up.pt", tarfile.SYMTYPE, linkname="../model.pt"),
        member("copy.pt", tarfile.LNKTYPE, linkname="model.pt"),
        # A Hugging Face cache style link: snapshots/<rev>/file -> ../../blobs/<hash>.
        member("blobs/abc", data=b"blob"),
        member("snapshots/r1/config.json", tarfile.SYMTYPE, linkname="../../blobs/abc"),
    )


def test_a_good_archive_is_extracted_whole(tmp_path):
    destination = tmp_path / "out" / "model"
    written = safe_extract(good(tmp_path), destination)
    assert [p.relative_to(destination).as_posix() for p in written] == [
        "model.pt", "code/inference.py", "latest.pt", "code/up.pt", "copy.pt", "blobs/abc",
        "snapshots/r1/config.json"]
    assert (destination / "model.pt").read_bytes() == b"weights"
    assert (destination / "latest.pt").read_bytes() == b"weights"
    assert (destination / "code" / "up.pt").read_bytes() == b"weights"
    assert (destination / "copy.pt").read_bytes() == b"weights"
    assert (destination / "snapshots" / "r1" / "config.json").read_bytes() == b"blob"
    assert os.readlink(destination / "latest.pt") == "model.pt"
    assert sorted(p.name for p in destination.parent.iterdir()) == ["model"]  # no leftovers


def test_an_empty_existing_destination_is_fine_a_full_one_is_not(tmp_path):
    destination = tmp_path / "model"
    destination.mkdir()
    safe_extract(good(tmp_path), destination)
    with pytest.raises(FileExistsError):
        safe_extract(good(tmp_path), destination)


UNSAFE = {
    "absolute path": ([member("/tmp/evil", data=b"x")], "has an absolute path"),
    "dot-dot escape": ([member("a/../../evil", data=b"x")], "has a '..' component"),
    "plain dot-dot": ([member("../evil", data=b"x")], "has a '..' component"),
    "symlink to /etc/passwd": (
        [member("passwd", tarfile.SYMTYPE, linkname="/etc/passwd")],
        "symlink to the absolute path '/etc/passwd'"),
    "relative symlink outside": (
        [member("d", tarfile.DIRTYPE), member("d/up", tarfile.SYMTYPE, linkname="../../x")],
        "symlink -> '../../x' that leaves the destination"),
    "hardlink outside": (
        [member("h", tarfile.LNKTYPE, linkname="../outside")],
        "hard link -> '../outside' that leaves the destination"),
    "hardlink absolute": (
        [member("h", tarfile.LNKTYPE, linkname="/etc/passwd")],
        "hard link -> '/etc/passwd' that points to an absolute path"),
    "symlink then dot-dot through it": (
        [member("here", tarfile.SYMTYPE, linkname="."),
         member("up", tarfile.SYMTYPE, linkname="here/..")],
        "symlink -> 'here/..' that leaves the destination"),
    "write through a symlinked folder": (
        [member("d", tarfile.SYMTYPE, linkname="sub/../.."), member("d/x", data=b"x")],
        "leaves the destination"),
    "link loop": (
        [member("a", tarfile.SYMTYPE, linkname="b"), member("b", tarfile.SYMTYPE,
                                                            linkname="a")],
        "too many levels of symbolic links"),
    "character device": ([member("null", tarfile.CHRTYPE)], "is a device file"),
    "block device": ([member("sda", tarfile.BLKTYPE)], "is a device file"),
    "fifo": ([member("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "duplicate name": ([member("a", data=b"1"), member("./a", data=b"2")], "appears twice"),
    "symlink replaced by a file": (
        [member("a", tarfile.SYMTYPE, linkname="b"), member("a", data=b"x")], "appears twice"),
}


@pytest.mark.parametrize("case", UNSAFE, ids=list(UNSAFE))
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, case):
    members, why = UNSAFE[case]
    # A harmless member first: it must not be extracted either.
    path = archive(tmp_path / "evil.tar.gz", member("harmless.txt", data=b"ok"), *members)
    destination = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(path, destination)
    message = str(info.value)
    assert str(path) in message and why in message and "nothing was extracted" in message
    assert not destination.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]


def test_a_real_device_node_is_refused(tmp_path):
    # Make the archive with tarfile.add from the real /dev/null when we can read it.
    if not Path("/dev/null").exists() or not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("no /dev/null character device here")
    path = tmp_path / "dev.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add("/dev/null", arcname="null")
    with pytest.raises(UnsafeArchiveError, match="'null' is a device file"):
        safe_extract(path, tmp_path / "out")


def test_setuid_and_group_writable_modes_are_cleared_by_the_data_filter(tmp_path):
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("tarfile has no data filter on this Python")
    path = archive(tmp_path / "m.tar.gz", member("tool", data=b"#!/bin/sh\n", mode=0o6777))
    (written,) = safe_extract(path, tmp_path / "out")
    mode = stat.S_IMODE(written.stat().st_mode)
    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH)


@pytest.mark.parametrize("content", [b"not a tar at all", b"\x1f\x8b\x08\x00garbage"])
def test_unreadable_archives_are_refused(tmp_path, content):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(content)
    with pytest.raises(UnsafeArchiveError, match="cannot be read"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_archive_leaves_nothing_behind(tmp_path):
    big = archive(tmp_path / "big.tar.gz", member("a.bin", data=os.urandom(200_000)),
                  member("b.bin", data=os.urandom(200_000)))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    with pytest.raises(UnsafeArchiveError):
        safe_extract(cut, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tar.gz", "cut.tar.gz"]
