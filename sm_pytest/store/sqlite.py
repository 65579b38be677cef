"""The SQLite file that the tracking store and the run cache share
(``<artifacts>/tracking.sqlite``), opened the same way by both: the folder made, a lock
timeout long enough for a parallel session, each schema created once per file, and every
block committed whole or rolled back."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_TIMEOUT_S = 30
# (path, inode, schema) of files whose schema this process has created already. A file
# deleted and made again may get the same inode back, so an empty file is always prepared.
_prepared: set[tuple[str, int, str]] = set()
_prepared_lock = threading.Lock()


@contextlib.contextmanager
def connect(db_path: Path, schema: str,
            upgrade: Callable[[sqlite3.Connection], None] | None = None
            ) -> Iterator[sqlite3.Connection]:
    """A connection to `db_path` with `schema` (CREATE ... IF NOT EXISTS statements) in
    place and `upgrade` applied once; the block is one transaction."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not db_path.exists() or db_path.stat().st_size == 0
    connection = sqlite3.connect(db_path, timeout=LOCK_TIMEOUT_S)
    try:
        key = (str(db_path), os.stat(db_path).st_ino, schema)
        with _prepared_lock:
            prepared = key in _prepared and not fresh
        if not prepared:
            connection.executescript(schema)
            if upgrade is not None:
                upgrade(connection)
            with _prepared_lock:
                _prepared.add(key)
        with connection:  # commits, or rolls back on an exception
            yield connection
    finally:
        connection.close()
