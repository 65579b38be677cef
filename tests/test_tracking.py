"""The embedded tracking store: rows per run and per repeat, and stores from older versions."""

from __future__ import annotations

import sqlite3

from sm_pytest.model import RepeatRecord, RunRecord
from sm_pytest.store.tracking import LocalTracker, runs_frame


def record(**changes) -> RunRecord:
    rec = {"experiment": "exp", "description": "", "path": "exp.yaml", "run_id": "",
           "name": "exp", "status": "completed", "verdict": "pass", "backend": "local",
           "instance_type": "local", "job_name": "", "started_at": 0, "ended_at": 1,
           "duration_s": 1, "artifact_dir": "a", "log_path": "", "model_dir": "",
           "failure_reason": "", "swept": {}, "hyperparameters": {"seed": 1},
           "metric_series": {"accuracy": [0.5, 0.9]}, "cached": False, "repeats": []}
    return RunRecord(**{**rec, **changes})


def test_a_store_from_before_repeat_rows_is_upgraded_in_place(tmp_path):
    db_path = tmp_path / "tracking.sqlite"
    with sqlite3.connect(db_path) as db:  # the runs table as the first release wrote it
        db.executescript("""
            CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
                                      description TEXT, path TEXT);
            CREATE TABLE runs (id INTEGER PRIMARY KEY, experiment_id INTEGER NOT NULL,
                session TEXT, run_id TEXT, name TEXT, status TEXT, verdict TEXT, backend TEXT,
                instance_type TEXT, job_name TEXT, started_at REAL, ended_at REAL,
                duration_s REAL, artifact_dir TEXT, log_path TEXT, model_dir TEXT,
                failure_reason TEXT);
            INSERT INTO experiments(name) VALUES ('old');
            INSERT INTO runs(experiment_id, session, name) VALUES (1, 's0', 'old');
        """)
    db.close()
    LocalTracker(db_path, "s1").record(record())
    runs = runs_frame(db_path)
    assert list(runs.name) == ["old", "exp"]
    assert runs.repeat_index.isna().all()
    assert runs.accuracy.iloc[1] == 0.9


def test_repeats_are_rows_of_their_own_and_cached_ones_are_not_recorded_again(tmp_path):
    repeats = [RepeatRecord(cached=index == 1, status="completed", artifact_dir=f"r{index}",
                            hyperparameters={"seed": index + 1},
                            metric_series={"accuracy": [0.9 + index / 100]})
               for index in range(3)]
    LocalTracker(tmp_path / "t.sqlite", "s1").record(record(repeats=repeats))
    runs = runs_frame(tmp_path / "t.sqlite")
    assert list(runs.repeat_index) == [1, 3]
    assert list(runs.accuracy) == [0.9, 0.92]
    assert list(runs.artifact_dir) == ["r0", "r2"]
