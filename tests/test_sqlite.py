"""sm_pytest/store/sqlite.py: the one way the tracking store and the run cache open their
shared SQLite file."""

from __future__ import annotations

import sqlite3

import pytest

from sm_pytest.store import sqlite

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT);"


def test_connect_makes_the_folder_and_the_schema(tmp_path):
    db = tmp_path / "deep" / "tracking.sqlite"
    with sqlite.connect(db, SCHEMA) as connection:
        connection.execute("INSERT INTO notes (text) VALUES ('kept')")
    with sqlite.connect(db, SCHEMA) as connection:
        assert connection.execute("SELECT text FROM notes").fetchall() == [("kept",)]


def test_a_block_that_fails_is_rolled_back_whole(tmp_path):
    db = tmp_path / "tracking.sqlite"
    with pytest.raises(RuntimeError), sqlite.connect(db, SCHEMA) as connection:
        connection.execute("INSERT INTO notes (text) VALUES ('half')")
        raise RuntimeError("interrupted")
    with sqlite.connect(db, SCHEMA) as connection:
        assert connection.execute("SELECT count(*) FROM notes").fetchone() == (0,)


def test_the_connection_is_closed_after_the_block(tmp_path):
    with sqlite.connect(tmp_path / "t.sqlite", SCHEMA) as connection:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")


def test_upgrade_runs_once_per_file(tmp_path):
    calls = []

    def upgrade(connection):
        calls.append(connection)
        connection.execute("CREATE TABLE IF NOT EXISTS extra (x)")

    for _ in range(3):
        with sqlite.connect(tmp_path / "a.sqlite", SCHEMA, upgrade) as connection:
            connection.execute("SELECT x FROM extra")
    assert len(calls) == 1

    with sqlite.connect(tmp_path / "b.sqlite", SCHEMA, upgrade) as connection:
        assert connection.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    assert len(calls) == 2


def test_a_file_deleted_and_made_again_gets_its_schema_again(tmp_path, monkeypatch):
    db = tmp_path / "tracking.sqlite"
    with sqlite.connect(db, SCHEMA):
        pass
    inode = db.stat().st_ino
    db.unlink()
    # The file system may or may not hand the inode back: make it do so.
    real_stat = sqlite.os.stat

    def same_inode(path, *args, **kwargs):
        found = real_stat(path, *args, **kwargs)
        if str(path) != str(db):
            return found
        fields = list(found)
        fields[1] = inode  # st_ino
        return sqlite.os.stat_result(fields)

    monkeypatch.setattr(sqlite.os, "stat", same_inode)
    with sqlite.connect(db, SCHEMA) as connection:
        assert connection.execute("SELECT count(*) FROM notes").fetchone() == (0,)


def test_the_lock_timeout_allows_a_parallel_session():
    assert sqlite.LOCK_TIMEOUT_S >= 30
