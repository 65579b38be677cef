"""Tolerances and repeats: what the YAML may say, and a clear message for every mistake."""

from __future__ import annotations

import pytest

from sm_pytest.spec import yamlsafe
from sm_pytest.spec.tolerances import (
    DEFAULT_K,
    Repeat,
    Tolerance,
    ToleranceError,
    guess_direction,
    parse_repeat,
    parse_tolerances,
)


def test_absolute_relative_and_k():
    parsed = parse_tolerances({
        "test_accuracy": {"direction": "higher", "max_drop": 0.01},
        "test_loss": {"direction": "lower", "max_drop": "5%"},
        "train_loss": {"direction": "lower", "max_drop": 0.05, "k": 3},
        "epochs_done": {"direction": "higher", "max_drop": 0},
    })
    assert parsed["test_accuracy"] == Tolerance("test_accuracy", "higher", 0.01, False, DEFAULT_K)
    assert parsed["test_loss"] == Tolerance("test_loss", "lower", 0.05, True, 2.0)
    assert parsed["train_loss"].k == 3.0
    assert parsed["epochs_done"].max_drop == 0.0
    assert str(parsed["test_loss"]) == "lower is better, max_drop 5%, k 2"


@pytest.mark.parametrize("text, fraction", [
    ("5%", 0.05), ("5 %", 0.05), (" 2.5% ", 0.025), ("0%", 0.0), (".5%", 0.005), ("150%", 1.5),
])
def test_percent_forms(text, fraction):
    tolerance = parse_tolerances({"test_loss": {"max_drop": text}})["test_loss"]
    assert tolerance.relative
    assert tolerance.max_drop == pytest.approx(fraction)


def test_allowed_is_the_larger_of_the_drop_and_k_sigma():
    absolute = Tolerance("acc", "higher", 0.01, False)
    relative = Tolerance("loss", "lower", 0.05, True, k=3)
    assert absolute.allowed(0.97) == 0.01
    assert absolute.allowed(0.97, sigma=0.004) == 0.01  # 2 x 0.004 is less
    assert absolute.allowed(0.97, sigma=0.01) == pytest.approx(0.02)
    assert relative.allowed(0.2) == pytest.approx(0.01)
    assert relative.allowed(-0.2) == pytest.approx(0.01)  # relative to |baseline|
    assert relative.allowed(0.2, sigma=0.01) == pytest.approx(0.03)


def test_entries_merge_over_defaults_field_by_field():
    defaults = parse_tolerances({
        "test_accuracy": {"direction": "higher", "max_drop": 0.01},
        "test_loss": {"direction": "lower", "max_drop": "5%", "k": 3},
    })
    merged = parse_tolerances({"test_loss": {"max_drop": 0.02}, "test_accuracy": None,
                               "train_loss": {"max_drop": "10%"}}, defaults=defaults)
    assert merged["test_loss"] == Tolerance("test_loss", "lower", 0.02, False, 3.0)
    assert merged["test_accuracy"] == defaults["test_accuracy"]
    assert merged["train_loss"] == Tolerance("train_loss", "lower", 0.10, True, 2.0)
    assert defaults["test_loss"].max_drop == 0.05  # the defaults are not changed
    assert parse_tolerances(None, defaults=defaults) == defaults
    assert parse_tolerances({}) == {}


@pytest.mark.parametrize("metric, direction", [
    ("train_loss", "lower"), ("test_loss", "lower"), ("val/Loss", "lower"),
    ("top1_error", "lower"), ("epoch_seconds", "lower"), ("step_time", "lower"),
    ("val_err", "lower"), ("test_accuracy", "higher"), ("f1_macro", "higher"),
    ("roc_auc", "higher"), ("precision", "higher"), ("recall@5", "higher"),
    ("samples_per_second", "higher"), ("val_acc", "higher"), ("widgets", None),
    ("account_balance", None),
])
def test_guess_direction(metric, direction):
    assert guess_direction(metric) == direction


def test_direction_is_guessed_when_omitted_and_explicit_wins():
    parsed = parse_tolerances({"samples_per_second": {"max_drop": "10%"},
                               "odd_loss": {"direction": "higher", "max_drop": 1}})
    assert parsed["samples_per_second"].direction == "higher"
    assert parsed["odd_loss"].direction == "higher"


TOLERANCE_ERRORS = [
    # raw, key path, fragments of the message
    ([0.01], ("tolerances",), ["'tolerances' must be a mapping", "not a list"]),
    ("5%", ("tolerances",), ["'tolerances' must be a mapping"]),
    ({"acc": 0.01}, ("tolerances", "acc"),
     ["the tolerance of 'acc' must be a mapping such as {direction: higher, max_drop: 0.01}",
      "not a number"]),
    ({1: {"max_drop": 0.1}}, ("tolerances", 1), ["metric name 1 must be a string"]),
    ({"test_loss": {"maxdrop": 0.1}}, ("tolerances", "test_loss", "maxdrop"),
     ["unknown field 'maxdrop' in the tolerance of 'test_loss': did you mean 'max_drop'?"]),
    ({"test_loss": {"max_drop": 0.1, "sigma": 2}}, ("tolerances", "test_loss", "sigma"),
     ["unknown field 'sigma'", "known fields are direction, k, max_drop"]),
    ({"test_loss": {"direction": "down", "max_drop": 0.1}},
     ("tolerances", "test_loss", "direction"),
     ["direction of 'test_loss' must be higher or lower, not 'down'; write direction: higher"]),
    ({"test_loss": {"direction": True, "max_drop": 0.1}},
     ("tolerances", "test_loss", "direction"), ["must be higher or lower, not True"]),
    ({"test_loss": {"max_drop": -0.1}}, ("tolerances", "test_loss", "max_drop"),
     ["max_drop of 'test_loss' is negative (-0.1)", "write 0 or more"]),
    ({"test_loss": {"max_drop": "-5%"}}, ("tolerances", "test_loss", "max_drop"),
     ["max_drop of 'test_loss' is negative ('-5%')"]),
    ({"test_loss": {"max_drop": "abc%"}}, ("tolerances", "test_loss", "max_drop"),
     ["cannot read max_drop 'abc%' of 'test_loss'; write max_drop: 0.01 for an absolute drop"
      " or max_drop: '2%' for a relative one"]),
    ({"test_loss": {"max_drop": "5%%"}}, ("tolerances", "test_loss", "max_drop"),
     ["cannot read max_drop '5%%'"]),
    ({"test_loss": {"max_drop": "0.05"}}, ("tolerances", "test_loss", "max_drop"),
     ["is a quoted number without '%'; write max_drop: 0.05 (unquoted) for an absolute drop"
      " or max_drop: '0.05%' for a relative one"]),
    ({"test_loss": {"max_drop": True}}, ("tolerances", "test_loss", "max_drop"),
     ["max_drop of 'test_loss' must be a number or a percent, not a boolean"]),
    ({"test_loss": {"max_drop": [0.1]}}, ("tolerances", "test_loss", "max_drop"),
     ["must be a number or a percent, not a list"]),
    ({"test_loss": {"max_drop": float("nan")}}, ("tolerances", "test_loss", "max_drop"),
     ["must be a finite number"]),
    ({"test_loss": {"max_drop": float("inf")}}, ("tolerances", "test_loss", "max_drop"),
     ["must be a finite number"]),
    ({"test_loss": {"max_drop": 0.1, "k": 0}}, ("tolerances", "test_loss", "k"),
     ["k of 'test_loss' must be above 0 (0 given)"]),
    ({"test_loss": {"max_drop": 0.1, "k": -1.5}}, ("tolerances", "test_loss", "k"),
     ["must be above 0 (-1.5 given)"]),
    ({"test_loss": {"max_drop": 0.1, "k": "2"}}, ("tolerances", "test_loss", "k"),
     ["k of 'test_loss' must be a number such as 2", "not '2'"]),
    ({"test_loss": {"direction": "lower"}}, ("tolerances", "test_loss"),
     ["the tolerance of 'test_loss' has no max_drop; write max_drop: 0.01"]),
    ({"test_loss": None}, ("tolerances", "test_loss"), ["has no max_drop"]),
    ({"widgets": {"max_drop": 1}}, ("tolerances", "widgets"),
     ["cannot tell from its name whether a higher or a lower 'widgets' is better; add"
      " direction: higher or direction: lower"]),
]


@pytest.mark.parametrize("raw, key_path, fragments", TOLERANCE_ERRORS,
                         ids=[str(i) for i in range(len(TOLERANCE_ERRORS))])
def test_tolerance_errors(raw, key_path, fragments):
    with pytest.raises(ToleranceError) as info:
        parse_tolerances(raw)
    assert info.value.key_path == key_path
    for fragment in fragments:
        assert fragment in str(info.value)
    assert str(info.value) == info.value.message
    assert "Traceback" not in str(info.value)


def test_an_error_in_an_override_points_at_the_experiment_field():
    defaults = parse_tolerances({"test_loss": {"direction": "lower", "max_drop": "5%"}})
    with pytest.raises(ToleranceError) as info:
        parse_tolerances({"test_loss": {"k": 0}}, defaults=defaults)
    assert info.value.key_path == ("tolerances", "test_loss", "k")


def test_key_path_finds_the_line_in_the_yaml_file():
    doc = yamlsafe.loads(
        "tolerances:\n"
        "  test_accuracy: {direction: higher, max_drop: 0.01}\n"
        "  test_loss:\n"
        "    direction: lower\n"
        "    max_drop: 'five%'\n",
        "experiments/bad.yaml",
    )
    with pytest.raises(ToleranceError) as info:
        parse_tolerances(doc.value["tolerances"])
    error = doc.error(info.value.key_path, info.value.message)
    assert str(error).startswith("experiments/bad.yaml:5: cannot read max_drop 'five%'")


def test_repeat_forms():
    assert parse_repeat(None) is None
    assert parse_repeat(3) == Repeat(3, "seed")
    assert parse_repeat(1) == Repeat(1)
    assert parse_repeat(20).count == 20
    assert parse_repeat({"count": 3}) == Repeat(3, "seed")
    assert parse_repeat({"count": 2, "seed": "random-seed"}) == Repeat(2, "random-seed")
    assert Repeat(3).seeds(7) == [7, 8, 9]


REPEAT_ERRORS = [
    (0, ("repeat",), ["must be from 1 to 20, not 0"]),
    (-2, ("repeat",), ["must be from 1 to 20, not -2"]),
    (21, ("repeat",), ["must be from 1 to 20, not 21", "each repeat is a full training run"]),
    (2.5, ("repeat",), ["must be a whole number from 1 to 20, e.g. repeat: 3; got 2.5"]),
    ("3", ("repeat",), ["must be a whole number", "got '3'"]),
    (True, ("repeat",), ["must be a whole number", "got True"]),
    ([3], ("repeat",), ["must be a whole number"]),
    ({"count": 0}, ("repeat", "count"), ["must be from 1 to 20, not 0"]),
    ({"count": 3.0}, ("repeat", "count"), ["must be a whole number"]),
    ({"seed": "seed"}, ("repeat",), ["'repeat' needs a count, e.g. repeat: {count: 3"]),
    ({"count": 3, "seeds": "seed"}, ("repeat", "seeds"),
     ["unknown field 'seeds' in 'repeat': did you mean 'seed'?"]),
    ({"count": 3, "times": 2}, ("repeat", "times"), ["known fields are count, seed"]),
    ({"count": 3, "seed": 42}, ("repeat", "seed"),
     ["names the hyperparameter that holds the seed, so it must be a name such as seed, not 42"]),
    ({"count": 3, "seed": ""}, ("repeat", "seed"), ["must be a name such as seed, not ''"]),
    ({"count": 3, "seed": "my seed"}, ("repeat", "seed"), ["not 'my seed'"]),
]


@pytest.mark.parametrize("raw, key_path, fragments", REPEAT_ERRORS,
                         ids=[str(i) for i in range(len(REPEAT_ERRORS))])
def test_repeat_errors(raw, key_path, fragments):
    with pytest.raises(ToleranceError) as info:
        parse_repeat(raw)
    assert info.value.key_path == key_path
    for fragment in fragments:
        assert fragment in str(info.value)
