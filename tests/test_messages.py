"""The phrasing helpers of sm_pytest/messages.py, used by every user-facing error."""

from __future__ import annotations

import datetime

import pytest

from sm_pytest.messages import aligned_table, suggest, type_name


def test_suggest_names_the_near_miss():
    assert suggest("thresold", ["threshold", "base", "expect"]) == "did you mean 'threshold'?"


def test_suggest_lists_what_is_known_when_nothing_is_close():
    assert suggest("zzz", ["expect", "base"]) == "known keys are base, expect"
    assert suggest(3, ["b", "a"], noun="metrics") == "known metrics are a, b"


@pytest.mark.parametrize(("value", "phrase"), [
    ({}, "a mapping"), ([], "a list"), ("x", "a string"), (True, "a boolean"),
    (1, "an integer"), (1.5, "a number"), (None, "empty"),
    (datetime.date(2026, 1, 1), "a date"),
    (datetime.datetime(2026, 1, 1), "a date and time"),
    ((1, 2), "tuple"),
])
def test_type_name_reads_in_a_sentence(value, phrase):
    assert type_name(value) == phrase


def test_aligned_table_pads_columns_and_strips_line_ends():
    table = aligned_table([("metric", "got", "rule"), ("accuracy", "0.9", "")])
    assert table.splitlines() == ["  metric    got  rule", "  accuracy  0.9"]

