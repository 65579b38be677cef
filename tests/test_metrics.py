"""sm_pytest/spec/metrics.py: metric definitions applied to a log the way SageMaker applies
them."""

from __future__ import annotations

import math

from sm_pytest.spec.metrics import (
    MetricDefinition,
    compile_definitions,
    extract,
    final_values,
    line_values,
    regex_problem,
)

LOSS = MetricDefinition("loss", r"loss=([0-9.eE+-]+|nan)")
ACCURACY = MetricDefinition("accuracy", r"accuracy=([0-9.]+)")


def test_regex_problem_accepts_one_capture_group():
    assert regex_problem(LOSS.regex) is None


def test_regex_problem_names_what_is_wrong():
    assert regex_problem("loss=(").startswith("it is not a valid regular expression (")
    assert regex_problem(r"loss=[0-9.]+").startswith("it needs one capture group")


def test_extract_keeps_every_value_in_log_order():
    log = ["epoch 1 loss=0.9 accuracy=0.5", "noise", "epoch 2 loss=0.4", "accuracy=0.8"]
    assert extract(log, [LOSS, ACCURACY]) == {"loss": [0.9, 0.4], "accuracy": [0.5, 0.8]}


def test_extract_lists_a_metric_that_never_matched():
    assert extract(["nothing here"], [LOSS]) == {"loss": []}


def test_line_values_takes_every_match_and_skips_what_is_no_number():
    patterns = compile_definitions([LOSS, MetricDefinition("step", r"step=(\S+)")])
    assert line_values("loss=1 loss=2 step=x step=3", patterns) == [
        ("loss", 1.0), ("loss", 2.0), ("step", 3.0)]


def test_a_nan_loss_is_kept_so_that_its_threshold_fails():
    [(name, value)] = line_values("loss=nan", compile_definitions([LOSS]))
    assert name == "loss" and math.isnan(value)
    assert math.isnan(final_values(extract(["loss=0.1", "loss=nan"], [LOSS]))["loss"])


def test_final_values_are_the_last_matches_of_metrics_that_matched():
    assert final_values({"loss": [0.9, 0.4], "accuracy": []}) == {"loss": 0.4}
