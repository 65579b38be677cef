"""sm_pytest/spec/thresholds.py: the threshold strings of an experiment's `expect:` and their
verdicts."""

from __future__ import annotations

import pytest

from sm_pytest.spec.thresholds import Condition, ThresholdSyntaxError, evaluate, parse


@pytest.mark.parametrize(("text", "passes", "fails"), [
    (">= 0.95", [0.95, 1.0], [0.9499]),
    ("< 0.25", [0.0, 0.2499], [0.25]),
    ("== 10", [10.0], [9.99]),
    ("0.90..0.99", [0.9, 0.99], [0.899, 0.991]),
    ("> 0, <= 1e-3", [1e-3], [0.0, 0.0011]),
])
def test_thresholds_hold_for_what_they_say(text, passes, fails):
    threshold = parse("m", text)
    assert all(threshold.holds(v) for v in passes)
    assert not any(threshold.holds(v) for v in fails)


def test_a_missing_or_nan_value_fails_every_threshold():
    threshold = parse("loss", "<= 1")
    assert not threshold.holds(None)
    assert not threshold.holds(float("nan"))
    assert not Condition(">=", 0).holds(float("nan"))


def test_a_range_becomes_two_conditions():
    assert parse("acc", " 0.9..1 ").conditions == (Condition(">=", 0.9), Condition("<=", 1.0))
    assert parse("acc", " 0.9..1 ").text == "0.9..1"


@pytest.mark.parametrize(("text", "message"), [
    (0.9, "must be a quoted string, got 0.9"),
    (True, "must be a quoted string, got True"),
    ("about 0.9", "cannot parse threshold 'about 0.9' for 'acc'"),
    ("0.99..0.9", "range '0.99..0.9' for 'acc' is empty"),
])
def test_bad_thresholds_say_how_to_write_them(text, message):
    with pytest.raises(ThresholdSyntaxError) as caught:
        parse("acc", text)
    assert message in str(caught.value)


def test_evaluate_gives_one_verdict_per_threshold():
    thresholds = (parse("acc", ">= 0.9"), parse("loss", "< 1"))
    verdicts = evaluate(thresholds, {"acc": 0.95})
    assert [(v.threshold.metric, v.actual, v.passed) for v in verdicts] == [
        ("acc", 0.95, True), ("loss", None, False)]
