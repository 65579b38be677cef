"""What is still to be sent to MLflow, kept in the tracking store's SQLite file.

Every record is written here before MLflow is called, and deleted once MLflow has all of
it: a server that is down, a refused call or a session killed mid-call leaves the row, and
`sm-pytest mlflow-sync` (or the end of the session) sends it later. A row is a run record
(RUN) or the end of a file's parent run (END), sent in the order they were written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_pytest.store.sqlite import connect

RUN = "run"
END = "end"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mlflow_outbox (
    id INTEGER PRIMARY KEY, uri TEXT NOT NULL, session TEXT NOT NULL, kind TEXT NOT NULL,
    experiment TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL, written REAL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class Row:
    id: int
    uri: str
    session: str
    kind: str  # RUN or END
    experiment: str
    name: str  # the item's name (RUN), the experiment's (END)
    payload: dict[str, Any]
    attempts: int
    last_error: str


class Outbox:
    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)

    def add(self, uri: str, session: str, kind: str, experiment: str, name: str,
            payload: dict[str, Any]) -> Row:
        with connect(self.db_path, _SCHEMA) as db:
            cursor = db.execute(
                "INSERT INTO mlflow_outbox(uri, session, kind, experiment, name, payload,"
                " written) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (uri, session, kind, experiment, name, json.dumps(payload), time.time()))
            return Row(id=int(cursor.lastrowid), uri=uri, session=session, kind=kind,
                       experiment=experiment, name=name, payload=payload, attempts=0,
                       last_error="")

    def sent(self, row_id: int) -> None:
        with connect(self.db_path, _SCHEMA) as db:
            db.execute("DELETE FROM mlflow_outbox WHERE id = ?", (row_id,))

    def not_sent(self, row_id: int, reason: str) -> None:
        with connect(self.db_path, _SCHEMA) as db:
            db.execute("UPDATE mlflow_outbox SET attempts = attempts + 1, last_error = ?"
                       " WHERE id = ?", (reason, row_id))

    def rows(self, *, uri: str | None = None, session: str | None = None) -> list[Row]:
        """The rows still to send, oldest first; only those for `uri` or `session` if given."""
        if not self.db_path.exists():
            return []
        query, values = "SELECT * FROM mlflow_outbox WHERE 1", []
        if uri is not None:
            query, values = query + " AND uri = ?", [*values, uri]
        if session is not None:
            query, values = query + " AND session = ?", [*values, session]
        with connect(self.db_path, _SCHEMA) as db:
            found = db.execute(query + " ORDER BY id", values).fetchall()
        return [Row(id=r[0], uri=r[1], session=r[2], kind=r[3], experiment=r[4], name=r[5],
                    payload=json.loads(r[6]), attempts=r[8], last_error=r[9]) for r in found]
