"""Passing runs, keyed by fingerprint, so that the same training is not done twice.

The cache lives in the tracking store's SQLite file (``<artifacts>/tracking.sqlite``), in its
own table; it points at each run's ``result.json`` instead of copying it, so an entry whose
attempt folder was deleted is simply a miss. Only runs that passed are remembered (the caller
decides); a hit hands back the stored result, which the current thresholds then judge again.

One writer at a time (the pytest controller); readers may be many. Every connection waits up
to 30 s for a lock, as the tracking store's do.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_pytest.model import RunRecord, RunResult
from sm_pytest.run.fingerprint import INPUT_PREFIX
from sm_pytest.store.sqlite import connect

__all__ = ["CachedRun", "RunCache", "cache_notes"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_cache (
    fingerprint TEXT PRIMARY KEY, parts TEXT, run_name TEXT, result_path TEXT, recorded REAL
);
CREATE INDEX IF NOT EXISTS run_cache_by_name ON run_cache(run_name, recorded);
"""

# How each part is named when it changed.
_PART_NAMES = {
    "version": "the fingerprint format changed (sm-pytest upgrade)",
    "hyperparameters": "hyperparameters changed",
    "entry_point": "entry point changed",
    "metric_definitions": "metric definitions changed",
    "source": "source changed",
    "backend": "backend/instance settings changed",
    "search": "the tune: block changed",
}


@dataclass
class CachedRun:
    fingerprint: str
    run_name: str
    result_path: Path
    result: dict[str, Any]  # the parsed result.json
    recorded: float  # time.time() when it was remembered

    def run_result(self) -> RunResult:
        return RunResult.from_json(self.result)


def _read_result(path: Path) -> dict[str, Any] | None:
    """The parsed result.json of a completed run, or None (gone, unreadable, not a result,
    or a run that did not complete and so can never have passed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = RunResult.from_json(data)
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return None
    return data if result.ok else None


def _describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key.startswith(INPUT_PREFIX):
            channel = key[len(INPUT_PREFIX):]
            if key not in old:
                changes.append(f"input {channel!r} added")
            elif key not in new:
                changes.append(f"input {channel!r} removed")
            else:
                changes.append(f"data changed (input {channel!r})")
        else:
            changes.append(_PART_NAMES.get(key, f"{key} changed"))
    return changes


def _tracked(db: sqlite3.Connection, item_name: str) -> bool:
    """Whether the tracking store (same file) has any run of this item."""
    try:
        return db.execute("SELECT 1 FROM runs WHERE name = ? LIMIT 1",
                          (item_name,)).fetchone() is not None
    except sqlite3.Error:  # no tracking table (yet), or another schema
        return False


class RunCache:
    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)

    def _db(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.db_path, _SCHEMA)

    def lookup(self, fingerprint: str) -> CachedRun | None:
        """The passing run with this fingerprint, if its result.json still exists, parses and
        says the run completed."""
        with self._db() as db:
            row = db.execute("SELECT fingerprint, run_name, result_path, recorded FROM run_cache"
                             " WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            return None
        path = Path(row[2])
        result = _read_result(path)
        if result is None:
            return None
        return CachedRun(fingerprint=row[0], run_name=row[1], result_path=path, result=result,
                         recorded=row[3])

    def remember(self, fingerprint: str, parts: Mapping[str, str], run_name: str,
                 result_path: Path) -> None:
        """Record a passing run (replacing an older entry with the same fingerprint)."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO run_cache(fingerprint, parts, run_name, result_path,"
                " recorded) VALUES (?, ?, ?, ?, ?)",
                (fingerprint, json.dumps(dict(parts), sort_keys=True), run_name,
                 str(Path(result_path).resolve()), time.time()),
            )

    def explain_miss(self, parts: Mapping[str, str], run_name: str, *, item_name: str) -> str:
        """Why this run is not reused, by comparing its parts with the latest cached entry
        of the same run name (the cache's own name, one per artifacts folder): "never run"
        ("never passed" when the tracking store has runs of its item, `item_name`, the name
        the store records), "source changed", "hyperparameters changed,
        data changed (input 'training')", "cached result.json is gone (...)"."""
        with self._db() as db:
            row = db.execute("SELECT parts, result_path FROM run_cache WHERE run_name = ?"
                             " ORDER BY recorded DESC, rowid DESC LIMIT 1",
                             (run_name,)).fetchone()
            tracked = row is None and _tracked(db, item_name)
        if row is None:
            return "never passed" if tracked else "never run"
        try:
            old = json.loads(row[0])
        except (TypeError, ValueError):
            return "the cached entry is unreadable"
        changes = _describe_changes(old, parts)
        if changes:
            return ", ".join(changes)
        if _read_result(Path(row[1])) is None:
            return f"cached result.json is gone or unreadable ({row[1]})"
        return "cached"  # nothing changed: lookup() would have found it


def cache_notes(records: list[RunRecord]) -> list[str]:
    """With --sm-reuse: how many items were reused and how many repeats trained, and why
    each of those missed the cache."""
    reused = [rec.name for rec in records if rec.cached]
    retrained = [(rec.name, repeat.miss) for rec in records for repeat in rec.repeats
                 if not repeat.cached]
    notes = [f"run cache: {len(reused)} reused, {len(retrained)} trained"]
    notes += [f"retrained {name}: {why}" for name, why in retrained if why]
    return notes
