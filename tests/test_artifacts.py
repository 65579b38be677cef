"""sm_pytest/run/artifacts.py: folder names, attempt folders that never collide, writes that
are whole or absent, and reading a log's tail."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from sm_pytest.run.artifacts import (
    folder_name,
    new_attempt_dir,
    run_dir_of,
    tail,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


@pytest.mark.parametrize(("text", "folder"), [
    ("baseline", "baseline"),
    ("lr=0.1,batch=32", "lr=0.1_batch=32"),
    ("a/b\\c d", "a_b_c_d"),
    ("..hidden.", "hidden"),
    ("///", "default"),
    ("", "default"),
])
def test_folder_name_is_safe_and_readable(text, folder):
    assert folder_name(text) == folder


def test_folder_name_is_cut_at_120_characters():
    assert folder_name("x" * 300) == "x" * 120


def test_run_dir_of_cleans_both_parts(tmp_path):
    assert run_dir_of(tmp_path, "my exp", "lr=0.1/b") == tmp_path / "my_exp" / "lr=0.1_b"


def test_attempt_folders_count_up_and_skip_strangers(tmp_path):
    first = new_attempt_dir(tmp_path, "exp", "run")
    assert first == tmp_path / "exp" / "run" / "attempt-0001"
    (first.parent / "attempt-notes").mkdir()
    (first.parent / "attempt-0007").mkdir()
    assert new_attempt_dir(tmp_path, "exp", "run").name == "attempt-0008"


def test_attempt_folders_never_collide_between_threads(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(new_attempt_dir(tmp_path, "e", "r")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in made) == [f"attempt-{n:04d}" for n in range(1, 9)]


def test_atomic_write_makes_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "result.json"
    write_json_atomic(target, {"b": 1, "a": tmp_path})
    assert json.loads(target.read_text()) == {"a": str(tmp_path), "b": 1}
    assert target.read_text().endswith("\n")
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "run.sh"
    target.write_text("old")
    os.chmod(target, 0o755)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_failed_atomic_write_leaves_the_old_file_and_no_leftovers(tmp_path, monkeypatch):
    target = tmp_path / "train.log"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["train.log"]


def test_tail_gives_the_last_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert tail(log, lines=3) == ["line 97", "line 98", "line 99"]


def test_tail_reads_only_the_end_of_a_huge_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"x" * (600 * 1024) + b"\nlast\n")
    assert tail(log, lines=1) == ["last"]
    assert len(tail(log, lines=5)[0]) <= 256 * 1024


def test_tail_of_a_missing_log_is_empty(tmp_path):
    assert tail(tmp_path / "nothing.log") == []


def test_tail_survives_bytes_that_are_not_utf8(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"ok\n\xff\xfe bad\n")
    assert tail(log) == ["ok", "\ufffd\ufffd bad"]
