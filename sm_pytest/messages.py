"""Small helpers that phrase user-facing errors the same way everywhere."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable
from typing import Any


def suggest(key: Any, known: Iterable[str], noun: str = "keys") -> str:
    """'did you mean X?' for a near miss, else the list of what is known."""
    known = list(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known {noun} are " + ", ".join(sorted(known))


def type_name(value: Any) -> str:
    """How a YAML value's type reads in a sentence: 'a mapping', 'a list', 'a number'..."""
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "empty",
            datetime.date: "a date", datetime.datetime: "a date and time"}.get(
        type(value), type(value).__name__)


def aligned_table(rows: list[tuple[str, ...]]) -> str:
    """Rows of text cells as left-aligned columns, each line indented by two spaces (the
    threshold report and the baseline comparison look alike)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows)
