"""The embedded experiment store: SQLite from the standard library, kept across sessions.

Only the pytest controller process writes (pytest-xdist workers send their records to it), so
there is a single writer. Read it back with `runs_frame()` / `metrics_frame()` (pandas).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sm_pytest.model import RepeatRecord, RunRecord, TrialRecord
from sm_pytest.store.sqlite import connect

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
    artifact_dir TEXT, log_path TEXT, model_dir TEXT, failure_reason TEXT,
    repeat_index INTEGER, trial INTEGER
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


def _add_columns(connection: sqlite3.Connection) -> None:
    """A store written before repeats (repeat_index) or searches (trial) had rows of their
    own gets the column."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    for column in ("repeat_index", "trial"):
        if column in columns:
            continue
        try:
            connection.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER")
        except sqlite3.OperationalError as exc:  # another session added it just now
            if "duplicate column" not in str(exc):
                raise


class LocalTracker:
    def __init__(self, db_path: Path, session: str):
        self.db_path = Path(db_path)
        self.session = session

    def record(self, rec: RunRecord) -> None:
        """One row per training run: an item's, or with `repeat` one per repeat (numbered
        from 1 in repeat_index, each with its own seed and series), all with the item's
        verdict. A search: one row per trial, numbered in `trial`. Runs taken from the run
        cache are in the store already."""
        runs: list[tuple[RunRecord | RepeatRecord | TrialRecord, int | None, int | None]]
        if rec.trials:
            runs = [] if rec.cached else [(trial, None, trial.number) for trial in rec.trials]
        elif len(rec.repeats) > 1:
            runs = [(repeat, index + 1, None) for index, repeat in enumerate(rec.repeats)
                    if not repeat.cached]
        else:
            runs = [] if rec.cached else [(rec, None, None)]
        with connect(self.db_path, _SCHEMA, upgrade=_add_columns) as db:
            db.execute(
                "INSERT INTO experiments(name, description, path) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET description=excluded.description,"
                " path=excluded.path",
                (rec.experiment, rec.description, rec.path),
            )
            (experiment_id,) = db.execute(
                "SELECT id FROM experiments WHERE name = ?", (rec.experiment,)
            ).fetchone()
            for run, repeat_index, trial in runs:
                self._insert_run(db, experiment_id, rec, run, repeat_index, trial)

    def close(self, *, interrupted: bool) -> list[str]:
        return []  # every record was committed as it came

    def _insert_run(self, db: sqlite3.Connection, experiment_id: int, rec: RunRecord,
                    run: RunRecord | RepeatRecord | TrialRecord, repeat_index: int | None,
                    trial: int | None) -> None:
        """One row: the item's names and verdict (`rec`), what the training gave and the
        hyperparameters it ran with (`run`: the item itself, one of its repeats or one of
        its trials)."""
        cursor = db.execute(
            "INSERT INTO runs(experiment_id, session, run_id, name, status, verdict, backend,"
            " instance_type, job_name, started_at, ended_at, duration_s, artifact_dir,"
            " log_path, model_dir, failure_reason, repeat_index, trial)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (experiment_id, self.session, rec.run_id, rec.name, run.status, rec.verdict,
             run.backend, run.instance_type, run.job_name, run.started_at, run.ended_at,
             run.duration_s, run.artifact_dir, run.log_path, run.model_dir,
             run.failure_reason, repeat_index, trial),
        )
        run_pk = cursor.lastrowid
        searched = run.values if isinstance(run, TrialRecord) else {}  # the tuned values
        db.executemany(
            "INSERT INTO params(run_pk, key, value, swept) VALUES (?, ?, ?, ?)",
            [(run_pk, key, json.dumps(value), int(key in rec.swept or key in searched))
             for key, value in run.hyperparameters.items()],
        )
        db.executemany(
            "INSERT INTO metrics(run_pk, name, step, value) VALUES (?, ?, ?, ?)",
            [(run_pk, name, step, value)
             for name, values in run.metric_series.items()
             for step, value in enumerate(values)],
        )


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
