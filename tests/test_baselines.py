"""Baselines: the committed JSON file, merging saves, and regression verdicts."""

from __future__ import annotations

import json
import math
import os

import pytest

from sm_pytest.gating import baselines
from sm_pytest.gating.baselines import (
    BaselineError,
    Comparison,
    MetricStats,
    compare,
    delta_arrow,
    failed,
    format_table,
)
from sm_pytest.spec.tolerances import Tolerance

ACC = Tolerance("test_accuracy", "higher", 0.01, False)
LOSS_REL = Tolerance("test_loss", "lower", 0.05, True)


def verdict(now, base, tolerance):
    """The verdict of one metric: `now` and `base` are lists of final values."""
    entry = {tolerance.metric: MetricStats.of(base)}
    [c] = compare("run", {tolerance.metric: now}, entry, {tolerance.metric: tolerance})
    return c


# --- the file ---------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    path = baselines.save(tmp_path / "baselines", "main", {
        "lr_sweep[lr=0.1]": {"test_accuracy": [0.97, 0.975, 0.965], "test_loss": [0.1]},
        "baseline": {"test_accuracy": [0.98]},
    }, fingerprints={"baseline": "abc123"})
    assert path == tmp_path / "baselines" / "main.json"
    loaded = baselines.load(tmp_path / "baselines", "main")
    assert loaded.name == "main" and loaded.path == path
    sweep = loaded.entry("lr_sweep[lr=0.1]")
    assert sweep["test_accuracy"].mean == pytest.approx(0.97)
    assert sweep["test_accuracy"].std == pytest.approx(0.005)
    assert sweep["test_accuracy"].n == 3
    assert sweep["test_loss"] == MetricStats(0.1, 0.0, 1)
    assert loaded.entry("baseline") == {"test_accuracy": MetricStats(0.98)}
    assert loaded.fingerprint("baseline") == "abc123"
    assert loaded.fingerprint("lr_sweep[lr=0.1]") is None
    assert loaded.created and loaded.created == loaded.updated
    assert set(loaded.recorded) == {"baseline", "lr_sweep[lr=0.1]"}


def test_the_file_is_stable_sorted_and_ends_with_a_newline(tmp_path):
    path = baselines.save(tmp_path, "main", {"b": {"y": [0.1 + 0.2]}, "a": {"x": [1, 2, 3]}})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    doc = json.loads(text)
    assert doc["format"] == "sm-pytest-baseline" and doc["version"] == 1
    assert doc["name"] == "main"
    assert list(doc) == sorted(doc) and list(doc["runs"]) == ["a", "b"]
    assert doc["runs"]["b"]["metrics"]["y"] == {"mean": 0.3, "n": 1, "std": 0.0}  # rounded
    assert doc["runs"]["a"]["metrics"]["x"] == {"mean": 2.0, "n": 3, "std": 1.0}
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "main.json"]  # no temp files left


def test_missing_file_and_missing_entry(tmp_path):
    assert baselines.load(tmp_path, "main") is None
    assert baselines.load(tmp_path / "no-such-folder", "main") is None
    baselines.save(tmp_path, "main", {"baseline": {"test_accuracy": [0.98]}})
    loaded = baselines.load(tmp_path, "main")
    assert loaded.entry("lr_sweep[lr=0.1]") is None
    assert loaded.entry("baseline") is not None


def test_a_save_merges_and_keeps_other_runs(tmp_path):
    baselines.save(tmp_path, "main", {"a": {"acc": [0.90]}, "b": {"acc": [0.80]}},
                   fingerprints={"a": "fa", "b": "fb"})
    created = json.loads((tmp_path / "main.json").read_text())["created"]
    baselines.save(tmp_path, "main", {"b": {"acc": [0.85], "loss": [0.2]}, "c": {"acc": [0.7]}})
    loaded = baselines.load(tmp_path, "main")
    assert sorted(loaded.runs) == ["a", "b", "c"]
    assert loaded.entry("a") == {"acc": MetricStats(0.90)}  # kept as it was
    assert loaded.fingerprint("a") == "fa"
    assert loaded.entry("b") == {"acc": MetricStats(0.85), "loss": MetricStats(0.2)}
    assert loaded.fingerprint("b") is None  # the entry was replaced as a whole
    assert loaded.created == created


def test_saving_the_same_values_again_changes_nothing(tmp_path):
    results = {"a": {"acc": [0.9, 0.91]}, "b": {"acc": [0.8]}}
    path = baselines.save(tmp_path, "main", results, fingerprints={"a": "fa"})
    os.utime(path, (1_000_000_000, 1_000_000_000))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    baselines.save(tmp_path, "main", results, fingerprints={"a": "fa"})
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    baselines.save(tmp_path, "main", {"a": {"acc": [0.9, 0.91]}, "b": {"acc": [0.7]}},
                   fingerprints={"a": "fa"})
    doc = json.loads(path.read_text())
    assert doc["runs"]["b"]["metrics"]["acc"]["mean"] == 0.7
    assert doc["runs"]["a"] == json.loads(before[0])["runs"]["a"]  # untouched, same date


def test_a_save_keeps_fields_it_does_not_know(tmp_path):
    path = tmp_path / "main.json"
    path.write_text(json.dumps({
        "format": "sm-pytest-baseline", "version": 1, "name": "main", "note": "keep me",
        "runs": {"a": {"metrics": {"acc": 0.9}, "comment": "hand-written"}},
    }))
    baselines.save(tmp_path, "main", {"b": {"acc": [0.8]}})
    doc = json.loads(path.read_text())
    assert doc["note"] == "keep me"
    assert doc["runs"]["a"] == {"metrics": {"acc": 0.9}, "comment": "hand-written"}
    assert baselines.load(tmp_path, "main").entry("a") == {"acc": MetricStats(0.9)}


def test_non_finite_values_are_not_recorded(tmp_path):
    baselines.save(tmp_path, "main", {"a": {"loss": [math.nan], "acc": [0.9, math.inf, 0.8]}})
    assert baselines.load(tmp_path, "main").entry("a") == {
        "acc": MetricStats(0.85, pytest.approx(0.0707, abs=1e-4), 2)}
    assert "NaN" not in (tmp_path / "main.json").read_text()


def test_metric_stats_of():
    assert MetricStats.of([0.5]) == MetricStats(0.5, 0.0, 1)
    stats = MetricStats.of([1.0, 2.0, 3.0])
    assert (stats.mean, stats.std, stats.n) == (2.0, 1.0, 3)
    assert math.isnan(MetricStats.of([1.0, math.nan]).mean)
    with pytest.raises(ValueError):
        MetricStats.of([])


# --- files that are not usable baselines --------------------------------------------------------

BROKEN = {
    "corrupted": ('{"format": "sm-pytest-baseline", "version": 1, "runs": {',
                  ["main.json:1: the file is not valid JSON", "git checkout --",
                   "--sm-save-baseline main"]),
    "empty": ("", ["not valid JSON"]),
    "conflict": ('{\n<<<<<<< HEAD\n  "format": "sm-pytest-baseline",\n=======\n'
                 '  "format": "x",\n>>>>>>> feature\n}\n',
                 ["git merge conflict markers", "resolve the conflict"]),
    "foreign": ('{"name": "my-app", "version": "1.0.0", "dependencies": {"left-pad": "1"}}\n',
                ["this is not an sm-pytest baseline", "\"format\": \"sm-pytest-baseline\"",
                 "move it away, or choose another baseline name or folder"]),
    "a_list": ("[1, 2, 3]\n", ["this is not an sm-pytest baseline"]),
    "newer": ('{"format": "sm-pytest-baseline", "version": 2, "runs": {}}\n',
              ["written by a newer sm-pytest (format version 2; this one reads version 1)",
               "upgrade sm-pytest"]),
    "bad_version": ('{"format": "sm-pytest-baseline", "version": "1", "runs": {}}\n',
                    ["\"version\" must be a whole number from 1, not '1'"]),
    "runs_a_list": ('{"format": "sm-pytest-baseline", "version": 1, "runs": []}\n',
                    ["\"runs\" must be a mapping of run name to its entry"]),
    "entry_not_a_mapping": ('{"format": "sm-pytest-baseline", "version": 1,'
                            ' "runs": {"a[x=1]": 3}}\n',
                            ["runs[\"a[x=1]\"] must be a mapping with a \"metrics\" mapping"]),
    "mean_missing": ('{"format": "sm-pytest-baseline", "version": 1,'
                     ' "runs": {"a": {"metrics": {"acc": {"std": 0.1}}}}}\n',
                     ["runs[\"a\"].metrics.acc must be a mapping with a finite number \"mean\""]),
    "mean_nan": ('{"format": "sm-pytest-baseline", "version": 1,'
                 ' "runs": {"a": {"metrics": {"acc": {"mean": NaN}}}}}\n',
                 ["finite number \"mean\""]),
    "negative_std": ('{"format": "sm-pytest-baseline", "version": 1,'
                     ' "runs": {"a": {"metrics": {"acc": {"mean": 1, "std": -1}}}}}\n',
                     ["runs[\"a\"].metrics.acc.std must be a number of 0 or more, not -1"]),
    "zero_n": ('{"format": "sm-pytest-baseline", "version": 1,'
               ' "runs": {"a": {"metrics": {"acc": {"mean": 1, "n": 0}}}}}\n',
               ["runs[\"a\"].metrics.acc.n must be a whole number of 1 or more, not 0"]),
    "fingerprint_not_text": ('{"format": "sm-pytest-baseline", "version": 1,'
                             ' "runs": {"a": {"metrics": {}, "fingerprint": 5}}}\n',
                             ["runs[\"a\"].fingerprint must be a string, not 5"]),
    "duplicate_key": ('{"format": "sm-pytest-baseline", "version": 1, "runs": {"a": {},'
                      ' "a": {}}}\n', ["duplicate key 'a'"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_unusable_files_are_errors_and_are_never_touched(tmp_path, case):
    text, fragments = BROKEN[case]
    path = tmp_path / "main.json"
    path.write_text(text, encoding="utf-8")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    with pytest.raises(BaselineError) as loading:
        baselines.load(tmp_path, "main")
    with pytest.raises(BaselineError) as saving:
        baselines.save(tmp_path, "main", {"a": {"acc": [0.9]}})

    for info in (loading, saving):
        message = str(info.value)
        assert message.startswith(str(path))
        for fragment in fragments:
            assert fragment in message
        assert info.value.path == path
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == ["main.json"]


def test_not_utf8(tmp_path):
    (tmp_path / "main.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(BaselineError, match="not UTF-8 text"):
        baselines.load(tmp_path, "main")


def test_a_folder_in_the_way(tmp_path):
    (tmp_path / "main.json").mkdir()
    with pytest.raises(BaselineError, match="is not a file"):
        baselines.load(tmp_path, "main")
    (tmp_path / "sub").write_text("a file where the folder should be")
    with pytest.raises(BaselineError, match="cannot write the baseline"):
        baselines.save(tmp_path / "sub", "main", {"a": {"acc": [1.0]}})


@pytest.mark.parametrize("name, fragment", [
    ("../main", "baseline name '../main' is not usable"),
    ("a/b", "no folders"),
    ("a\\b", "is not usable"),
    ("", "the baseline name is empty"),
    (".hidden", "not starting with '.'"),
    ("..", "is not usable"),
    ("main branch", "is not usable"),
    ("x" * 101, "up to 100"),
    ("main.json", "give it without '.json', as 'main'"),
])
def test_bad_names(tmp_path, name, fragment):
    for call in (lambda: baselines.baseline_path(tmp_path, name),
                 lambda: baselines.load(tmp_path, name),
                 lambda: baselines.save(tmp_path, name, {"a": {"acc": [1.0]}})):
        with pytest.raises(BaselineError) as info:
            call()
        assert fragment in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["main", "release-1.2", "pr_42", "v2.0.1"])
def test_good_names(tmp_path, name):
    assert baselines.baseline_path(tmp_path, name) == tmp_path / f"{name}.json"


# --- verdicts -------------------------------------------------------------------------------

@pytest.mark.parametrize("base, now, expected", [
    (0.97, 0.95, "regressed"),   # a deliberate drop of 0.02
    (0.97, 0.96, "ok"),          # exactly the allowed 0.01 (float noise is not a regression)
    (0.97, 0.965, "ok"),
    (0.97, 0.975, "ok"),
    (0.97, 0.99, "improved"),    # better by more than allowed: refresh the baseline
])
def test_absolute_higher_is_better(base, now, expected):
    assert verdict([now], [base], ACC).verdict == expected


@pytest.mark.parametrize("base, now, expected", [
    (0.10, 0.12, "regressed"),
    (0.10, 0.105, "ok"),
    (0.10, 0.095, "ok"),
    (0.10, 0.08, "improved"),
])
def test_absolute_lower_is_better(base, now, expected):
    loss = Tolerance("test_loss", "lower", 0.01, False)
    assert verdict([now], [base], loss).verdict == expected


@pytest.mark.parametrize("base, now, expected", [
    (0.20, 0.22, "regressed"),   # +10% on a 5% tolerance
    (0.20, 0.21, "ok"),          # +5%: at the limit
    (0.20, 0.195, "ok"),
    (0.20, 0.18, "improved"),
    (2.00, 2.08, "ok"),          # the same 0.08 is within 5% of a larger baseline
    (2.00, 2.20, "regressed"),
])
def test_relative_lower_is_better(base, now, expected):
    c = verdict([now], [base], LOSS_REL)
    assert c.verdict == expected
    assert c.allowed == pytest.approx(0.05 * base)


@pytest.mark.parametrize("base, now, expected", [
    (0.90, 0.85, "regressed"),
    (0.90, 0.89, "ok"),
    (0.90, 0.95, "improved"),
])
def test_relative_higher_is_better(base, now, expected):
    assert verdict([now], [base], Tolerance("f1", "higher", 0.02, True)).verdict == expected


def test_repeats_use_the_mean_and_a_k_sigma_band():
    noisy_base = [0.95, 0.97, 0.99]  # mean 0.97, std 0.02
    # The mean dropped by 0.02, twice max_drop, but that is within 2 standard errors of the
    # difference (sqrt(0.02²/3 + 0.02²/3) = 0.0163, so 0.0327 is allowed): noise, not a
    # regression.
    c = verdict([0.93, 0.95, 0.97], noisy_base, ACC)
    assert c.verdict == "ok"
    assert c.delta == pytest.approx(-0.02)
    assert c.sigma == pytest.approx(math.sqrt(2 * 0.02 ** 2 / 3))
    assert c.allowed == pytest.approx(2 * c.sigma)
    # A clear drop of 0.07 is a regression even with the noise.
    assert verdict([0.88, 0.90, 0.92], noisy_base, ACC).verdict == "regressed"
    # A wider k lets more through.
    wide = Tolerance("test_accuracy", "higher", 0.01, False, k=5)
    assert verdict([0.88, 0.90, 0.92], noisy_base, wide).verdict == "ok"
    # Without repeats, the same 0.02 drop is beyond max_drop.
    assert verdict([0.95], [0.97], ACC).verdict == "regressed"


def test_repeats_on_one_side_only():
    c = verdict([0.955], [0.95, 0.97, 0.99], ACC)  # baseline n=3, this run n=1
    assert c.sigma == pytest.approx(0.02 / math.sqrt(3))
    assert c.verdict == "ok"


def test_missing_and_new_metrics_and_ungated_ones():
    entry = {"test_accuracy": MetricStats(0.97), "test_loss": MetricStats(0.1),
             "epoch_seconds": MetricStats(10.0)}
    now = {"test_loss": [0.5], "epoch_seconds": [99.0], "samples_per_second": [500.0],
           "f1": [0.9]}
    tolerances = {"test_accuracy": ACC, "test_loss": LOSS_REL,
                  "f1": Tolerance("f1", "higher", 0.01, False),
                  "train_loss": Tolerance("train_loss", "lower", 0.1, False)}
    by_metric = {c.metric: c for c in compare("run", now, entry, tolerances)}
    assert list(by_metric) == ["epoch_seconds", "f1", "samples_per_second", "test_accuracy",
                               "test_loss"]  # sorted; train_loss is in neither: not listed
    assert by_metric["test_accuracy"].verdict == "missing-metric"
    assert by_metric["test_accuracy"].now is None and by_metric["test_accuracy"].delta is None
    assert by_metric["test_loss"].verdict == "regressed"
    assert by_metric["f1"].verdict == "new-metric"  # gated, but no baseline value: ok
    assert by_metric["epoch_seconds"].verdict == "ok"  # 10x slower, but not gated
    assert not by_metric["epoch_seconds"].gated and by_metric["epoch_seconds"].allowed is None
    assert by_metric["samples_per_second"].verdict == "new-metric"
    assert all(c.run == "run" for c in by_metric.values())
    assert failed(list(by_metric.values()))
    assert not failed([by_metric["f1"], by_metric["epoch_seconds"]])


def test_a_missing_metric_fails():
    [c] = compare("run", {}, {"test_accuracy": MetricStats(0.97)}, {"test_accuracy": ACC})
    assert c.verdict == "missing-metric" and failed([c])


def test_an_ungated_metric_gone_from_the_log_does_not_fail():
    [c] = compare("run", {}, {"epoch_seconds": MetricStats(10.0)}, {})
    assert c.verdict == "ok" and not failed([c])


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_diverged_run_is_a_regression(value):
    c = verdict([value], [0.1], LOSS_REL)
    assert c.verdict == "regressed"
    assert verdict([0.5, value, 0.5], [0.97], ACC).verdict == "regressed"


def test_failed():
    assert not failed([])
    assert failed([verdict([0.5], [0.97], ACC)])
    assert not failed([verdict([0.99], [0.97], ACC)])  # an improvement never fails


# --- reporting --------------------------------------------------------------------------------

def test_format_table():
    entry = {"test_accuracy": MetricStats(0.97, 0.004, 3), "test_loss": MetricStats(0.1),
             "epoch_seconds": MetricStats(12.5), "gone": MetricStats(1.0)}
    now = {"test_accuracy": [0.95, 0.951, 0.949], "test_loss": [0.08],
           "epoch_seconds": [12.0], "new_thing": [0.00012]}
    tolerances = {"test_accuracy": ACC, "test_loss": LOSS_REL,
                  "gone": Tolerance("gone", "higher", 0.1, False)}
    table = format_table(compare("run", now, entry, tolerances))
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "baseline", "now", "delta", "allowed", "verdict"]
    assert all(line.startswith("  ") and line == line.rstrip() for line in lines)
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["test_accuracy"].split() == [
        "test_accuracy", "0.9700", "±", "0.0040", "(n=3)", "0.9500", "±", "0.0010", "(n=3)",
        "-0.0200", "0.0100", "REGRESSED"]
    assert rows["test_loss"].split() == ["test_loss", "0.1000", "0.0800", "-0.0200", "0.0050",
                                         "improved"]
    assert rows["epoch_seconds"].split() == ["epoch_seconds", "12.5000", "12.0000", "-0.5000",
                                             "not", "gated", "ok"]
    assert rows["gone"].split() == ["gone", "1.0000", "—", "—", "0.1000", "MISSING", "(no",
                                    "value)"]
    assert rows["new_thing"].split() == ["new_thing", "—", "0.00012", "—", "not", "gated",
                                         "new", "(no", "baseline)"]
    # columns are aligned: every header starts where its column starts
    header = lines[0]
    for name, cell in (("baseline", "0.9700"), ("verdict", "REGRESSED")):
        assert header.index(name) == rows["test_accuracy"].index(cell)


def test_format_table_marks_the_sigma_band():
    [c] = compare("run", {"test_accuracy": [0.93, 0.95, 0.97]},
                  {"test_accuracy": MetricStats.of([0.95, 0.97, 0.99])}, {"test_accuracy": ACC})
    assert "0.0327 (2σ)" in format_table([c])
    assert format_table([]) == "  (no metrics to compare)"


def _comparison(metric, base, now, direction):
    tolerance = Tolerance(metric, direction, 0.01, False) if direction else None
    [c] = compare("run", {metric: [now]}, {metric: MetricStats(base)},
                  {metric: tolerance} if tolerance else {})
    return c


def test_delta_arrow_is_direction_aware():
    assert delta_arrow(_comparison("test_accuracy", 0.97, 0.982, "higher")) == "▲ +0.0120"
    assert delta_arrow(_comparison("test_accuracy", 0.97, 0.955, "higher")) == "▼ -0.0150"
    assert delta_arrow(_comparison("test_loss", 0.10, 0.085, "lower")) == "▲ -0.0150"
    assert delta_arrow(_comparison("test_loss", 0.10, 0.112, "lower")) == "▼ +0.0120"
    assert delta_arrow(_comparison("test_loss", 0.10, 0.10, "lower")) == "= 0.0000"


def test_delta_arrow_edge_cases():
    # not gated: the direction is guessed from the name, else no arrow
    assert delta_arrow(_comparison("epoch_seconds", 10.0, 12.0, None)) == "▼ +2.0000"
    assert delta_arrow(_comparison("widgets", 10.0, 12.0, None)) == "+2.0000"
    assert delta_arrow(_comparison("loss", 1e-5, 2e-5, "lower")) == "▼ +1e-05"
    # values read back from the file are rounded to 10 significant digits
    assert delta_arrow(_comparison("acc", 0.97, 0.97 + 1e-12, "higher")) == "= 0.0000"
    nothing = Comparison("acc", None, MetricStats(0.9), None, None, "new-metric")
    assert delta_arrow(nothing) == "—"
    assert delta_arrow(_comparison("acc", 0.97, math.nan, "higher")) == "▼ nan"
