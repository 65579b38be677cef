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
