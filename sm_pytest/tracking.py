"""The embedded experiment store: SQLite from the standard library, kept across sessions.

Only the pytest controller process writes (pytest-xdist workers send their records to it), so
there is a single writer. Read it back with `runs_frame()` / `metrics_frame()` (pandas).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, description TEXT, path TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    session TEXT, run_id TEXT, name TEXT, status TEXT, verdict TEXT,
    backend TEXT, instance_type TEXT, job_name TEXT,
    started_at REAL, ended_at REAL, duration_s REAL,
    artifact_dir TEXT, log_path TEXT, model_dir TEXT, failure_reason TEXT
);
CREATE TABLE IF NOT EXISTS params (
    run_pk INTEGER NOT NULL REFERENCES runs(id), key TEXT, value TEXT, swept INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    run_pk INTEGER NOT NULL REFERENCES runs(id), name TEXT, step INTEGER, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_pk, name);
CREATE INDEX IF NOT EXISTS params_by_run ON params(run_pk);
"""


def _connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db_path, timeout=30)
    connection.executescript(_SCHEMA)
    return connection


class LocalTracker:
    def __init__(self, db_path: Path, session: str):
        self.db_path = Path(db_path)
        self.session = session

    def record(self, rec: dict[str, Any]) -> None:
        with _connect(self.db_path) as db:
            db.execute(
                "INSERT INTO experiments(name, description, path) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET description=excluded.description,"
                " path=excluded.path",
                (rec["experiment"], rec["description"], rec["path"]),
            )
            (experiment_id,) = db.execute(
                "SELECT id FROM experiments WHERE name = ?", (rec["experiment"],)
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO runs(experiment_id, session, run_id, name, status, verdict, backend,"
                " instance_type, job_name, started_at, ended_at, duration_s, artifact_dir,"
                " log_path, model_dir, failure_reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (experiment_id, self.session, rec["run_id"], rec["name"], rec["status"],
                 rec["verdict"], rec["backend"], rec["instance_type"], rec["job_name"],
                 rec["started_at"], rec["ended_at"], rec["duration_s"], rec["artifact_dir"],
                 rec["log_path"], rec["model_dir"], rec["failure_reason"]),
            )
            run_pk = cursor.lastrowid
            db.executemany(
                "INSERT INTO params(run_pk, key, value, swept) VALUES (?, ?, ?, ?)",
                [(run_pk, key, json.dumps(value), int(key in rec["swept"]))
                 for key, value in rec["hyperparameters"].items()],
            )
            db.executemany(
                "INSERT INTO metrics(run_pk, name, step, value) VALUES (?, ?, ?, ?)",
                [(run_pk, name, step, value)
                 for name, values in rec["metric_series"].items()
                 for step, value in enumerate(values)],
            )
        db.close()


def runs_frame(db_path: Path):
    """One row per recorded run, with its final metrics as columns."""
    import pandas as pd

    with sqlite3.connect(db_path) as db:
        runs = pd.read_sql_query(
            "SELECT runs.id AS run_pk, experiments.name AS experiment, runs.* FROM runs"
            " JOIN experiments ON experiments.id = runs.experiment_id ORDER BY runs.id", db)
        final = pd.read_sql_query(
            "SELECT run_pk, name, value FROM metrics m WHERE step ="
            " (SELECT MAX(step) FROM metrics WHERE run_pk = m.run_pk AND name = m.name)", db)
    runs = runs.loc[:, ~runs.columns.duplicated()].drop(columns=["id", "experiment_id"])
    if not final.empty:
        wide = final.pivot(index="run_pk", columns="name", values="value")
        runs = runs.merge(wide, left_on="run_pk", right_index=True, how="left")
    return runs


def metrics_frame(db_path: Path):
    """Every metric value of every run, long format: run_pk, name, step, value."""
    import pandas as pd

    with sqlite3.connect(db_path) as db:
        return pd.read_sql_query("SELECT * FROM metrics ORDER BY run_pk, name, step", db)
