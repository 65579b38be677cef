"""A `tune:` item searched on this machine: Random and Grid reproducible, Bayesian with
Optuna, trials side by side, early stopping, failed trials, and what the summary, the store,
the report and the baseline keep of it."""

from __future__ import annotations

import importlib.util
import json
import sys

import pandas as pd
import pytest

from conftest import signal_pytest_when
from sm_pytest.store.tracking import runs_frame

needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason="needs the tune extra (optuna)")

# Per epoch, slowly: a line per epoch that a search can stop early between, and the start
# and end of each trial for the parallelism check.
EPOCH_TRAIN = '''
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--accuracy", type=float, default=0.9)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--pause", type=float, default=0.0)
parser.add_argument("--optimizer", default="sgd")
args, _ = parser.parse_known_args()
if args.optimizer == "broken":
    sys.exit("optimizer 'broken' does not exist")
started = time.time()
for epoch in range(1, args.epochs + 1):
    time.sleep(args.pause)
    print(f"epoch={epoch} accuracy={args.accuracy - 0.01 * (args.epochs - epoch):.4f}",
          flush=True)
with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "span.json"), "w") as f:
    json.dump([started, time.time()], f)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("ok")
'''
CONFIG = """
source_dir: src
entry_point: train.py
inputs: {training: data}
max_run: 120
metric_definitions:
  - {Name: accuracy, Regex: 'accuracy=([0-9.]+)'}
"""


def search(strategy: str, *, extra: str = "", expect: str = ">= 0.5", seed: int = 7,
           max_jobs: int = 6, parallel: int = 2, ranges: str = "") -> str:
    ranges = ranges or "    accuracy: {min: 0.5, max: 0.99}\n"
    return (f"base: config/tune.yaml\n"
            f"hyperparameters: {{epochs: 2}}\n"
            f"tune:\n  strategy: {strategy}\n"
            f"  objective: {{metric: accuracy, type: Maximize}}\n"
            f"  max_jobs: {max_jobs}\n  max_parallel_jobs: {parallel}\n"
            f"  random_seed: {seed}\n{extra}"
            f"  ranges:\n{ranges}"
            f"expect: {{accuracy: '{expect}'}}\n")


@pytest.fixture
def tuning(project):
    (project.root / "src" / "train.py").write_text(EPOCH_TRAIN)
    (project.root / "config" / "tune.yaml").write_text(CONFIG)
    return project


def trial_values(project, name: str = "lr_search") -> list[dict]:
    folders = sorted((project.artifacts / name).glob("default-trial*"))
    latest = [sorted(folder.glob("attempt-*"))[-1] for folder in folders]
    return [json.loads((attempt / "hyperparameters.json").read_text()) for attempt in latest]


def test_random_is_reproducible_with_its_seed(tuning):
    tuning.experiment("lr_search", search("Random"))
    tuning.run().assert_outcomes(passed=1)
    first = trial_values(tuning)
    assert len(first) == 6 and all(0.5 <= v["accuracy"] <= 0.99 for v in first)
    tuning.run().assert_outcomes(passed=1)
    again = trial_values(tuning)  # the second attempts of the same six trials
    assert again == first
    tuning.experiment("lr_search", search("Random", seed=8))
    tuning.run().assert_outcomes(passed=1)
    assert trial_values(tuning) != first


def test_grid_runs_every_combination_once(tuning):
    tuning.experiment("lr_search", search("Grid", max_jobs=4, ranges=(
        "    accuracy: {values: [0.6, 0.9]}\n    optimizer: {values: [sgd, adam]}\n")))
    result = tuning.run()
    result.assert_outcomes(passed=1)
    points = {(v["accuracy"], v["optimizer"]) for v in trial_values(tuning)}
    assert points == {(0.6, "sgd"), (0.6, "adam"), (0.9, "sgd"), (0.9, "adam")}
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["trial"]) == [1, 2, 3, 4]
    best = summary[summary["best"] == "*"]
    assert len(best) == 1 and best["accuracy"].iloc[0] == 0.9
    assert list(summary["verdict"].fillna("")) == ["", "", "pass", ""]
    assert "1 of 1 runs passed" in (tuning.artifacts / "summary.md").read_text()


@needs_optuna
def test_bayesian_searches_with_optuna_and_judges_the_best_trial(tuning):
    tuning.experiment("lr_search", search("Bayesian", max_jobs=8, expect=">= 0.9"))
    result = tuning.run()
    result.assert_outcomes(passed=1)
    values = [v["accuracy"] for v in trial_values(tuning)]
    assert len(values) == 8 and len(set(values)) == 8
    runs = runs_frame(tuning.artifacts / "tracking.sqlite")
    assert sorted(runs["trial"]) == list(range(1, 9))
    assert runs["accuracy"].max() >= 0.9  # the best trial, which met expect


def test_trials_run_max_parallel_jobs_at_a_time(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=4, extra="", ranges=(
        "    accuracy: {min: 0.5, max: 0.99}\n    pause: {values: [0.6]}\n")))
    tuning.run().assert_outcomes(passed=1)
    spans = [json.loads(p.read_text()) for p in
             sorted((tuning.artifacts / "lr_search").glob("default-trial*/**/span.json"))]
    assert len(spans) == 4
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2  # side by side, never more than max_parallel_jobs


def test_a_failed_trial_is_reported_and_the_search_goes_on(tuning):
    tuning.experiment("lr_search", search("Grid", max_jobs=3, ranges=(
        "    optimizer: {values: [sgd, broken, adam]}\n")))
    result = tuning.run()
    result.assert_outcomes(passed=1)
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed", "failed", "completed"]
    runs = runs_frame(tuning.artifacts / "tracking.sqlite")
    failed = runs[runs["status"] == "failed"]
    assert "--optimizer broken" in failed["failure_reason"].iloc[0]


def test_a_search_below_its_bar_lists_every_trial_in_its_report(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=3, expect=">= 0.999"))
    result = tuning.run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "3 trials of lr_search (Random, Maximize accuracy; best: trial" in out
    result.stdout.fnmatch_lines(["*trial  status     objective  accuracy*",
                                 "*1*completed*", "*2*completed*", "*3*completed*"])


def test_early_stopping_stops_trials_worse_than_the_median(tuning):
    """Four trials first (two at a time) set the median; a fifth that is clearly worse at
    its first epoch is stopped there, before its other four."""
    tuning.experiment("lr_search", search("Grid", max_jobs=5, parallel=1,
                                          extra="  early_stopping: Auto\n", ranges=(
        "    accuracy: {values: [0.9, 0.91, 0.92, 0.93, 0.2]}\n"
        "    pause: {values: [1.2]}\n    epochs: {values: [5]}\n")))
    result = tuning.run()
    result.assert_outcomes(passed=1)
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed"] * 4 + ["stopped early"]
    stopped = sorted((tuning.artifacts / "lr_search").glob("default-trial005/attempt-*"))[-1]
    assert (stopped / "train.log").read_text().count("epoch=") < 5
    assert "stopped it early" in json.loads((stopped / "result.json").read_text())[
        "failure_reason"]


def test_the_baseline_of_a_search_is_its_best_trial(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=4))
    tuning.run("--sm-save-baseline", "main").assert_outcomes(passed=1)
    saved = json.loads((tuning.root / "baselines" / "main.json").read_text())
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    best = summary.query("best == '*'")["accuracy"].iloc[0]
    assert best == summary["accuracy"].max()
    assert saved["runs"]["lr_search"]["metrics"]["accuracy"] == {"mean": best, "n": 1,
                                                                  "std": 0.0}


def test_optuna_missing_is_one_clear_error(tuning, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    tuning.experiment("lr_search", search("Bayesian"))
    result = tuning.run()
    result.assert_outcomes(errors=1)
    assert ("strategy Bayesian runs locally with Optuna: pip install 'sm-pytest[tune]'"
            in result.stdout.str())


def test_ctrl_c_mid_search_keeps_every_trial_so_far(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=6, ranges=(
        "    accuracy: {min: 0.5, max: 0.99}\n    pause: {values: [1.5]}\n"
        "    epochs: {values: [6]}\n")))
    returncode, output = signal_pytest_when(
        tuning.root, [],
        tuning.artifacts / "lr_search" / "default-trial001" / "attempt-0001" / "train.log",
        "epoch=1")
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["interrupted", "interrupted"], output
    runs = runs_frame(tuning.artifacts / "tracking.sqlite")
    assert sorted(runs["trial"]) == [1, 2]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_plots_draw_the_objective_against_each_range_and_in_trial_order(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=4, ranges=(
        "    accuracy: {min: 0.5, max: 0.99}\n    optimizer: {values: [sgd, adam]}\n")))
    # In a process of its own: matplotlib imported inside an in-process run would be
    # dropped from sys.modules after it, and load twice in this one (tests/test_plots.py).
    tuning.run_subprocess("--sm-plots").assert_outcomes(passed=1)
    plots = sorted(p.name for p in (tuning.artifacts / "plots").glob("*.png"))
    assert plots == ["lr_search-accuracy-by-trial.png", "lr_search-accuracy-vs-accuracy.png",
                     "lr_search-accuracy-vs-optimizer.png"]
    curves = list((tuning.artifacts / "lr_search").glob("default-trial*/*/learning_curve.png"))
    assert len(curves) == 4


def test_searches_under_xdist_reach_the_controller_with_their_trials(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=3))
    tuning.experiment("other_search", search("Random", max_jobs=2, seed=3))
    tuning.run_subprocess("-n", "2").assert_outcomes(passed=2)
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert sorted(zip(summary["experiment"], summary["trial"], strict=True)) == [
        ("lr_search", 1), ("lr_search", 2), ("lr_search", 3),
        ("other_search", 1), ("other_search", 2)]
    assert (summary["best"] == "*").sum() == 2


def test_an_unchanged_search_is_reused_whole_and_a_changed_one_searches_again(tuning):
    tuning.experiment("lr_search", search("Random", max_jobs=3))
    tuning.run("--sm-reuse").assert_outcomes(passed=1)
    first = pd.read_csv(tuning.artifacts / "summary.csv")
    again = tuning.run("--sm-reuse")
    again.assert_outcomes(passed=1)
    assert "run cache: 1 reused, 0 trained" in again.stdout.str()
    reused = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(reused["status"]) == ["cached"] * 3
    assert list(reused["accuracy"]) == list(first["accuracy"])
    assert list(reused["best"].fillna("")) == list(first["best"].fillna(""))
    assert not list((tuning.artifacts / "lr_search").glob("*/attempt-0002"))  # nothing ran
    runs = runs_frame(tuning.artifacts / "tracking.sqlite")
    assert len(runs) == 3  # the reused trials are in the store once
    tuning.experiment("lr_search", search("Random", max_jobs=3, seed=9))
    changed = tuning.run("--sm-reuse")
    changed.assert_outcomes(passed=1)
    assert "the tune: block changed" in changed.stdout.str()
    assert len(list((tuning.artifacts / "lr_search").glob("*/attempt-0002"))) == 3


def test_junit_names_the_trials_and_the_best_point(tuning):
    tuning.experiment("lr_search", search("Grid", max_jobs=2, ranges=(
        "    accuracy: {values: [0.6, 0.9]}\n")))
    tuning.run("--junitxml", "out.xml").assert_outcomes(passed=1)
    import xml.etree.ElementTree as ET

    props = {p.get("name"): p.get("value")
             for p in ET.parse(tuning.root / "out.xml").iter("property")}
    assert props["sm.trials"] == "2" and props["sm.best_trial"] == "2"
    assert props["sm.best.accuracy"] == "0.9" and props["sm.metric.accuracy"] == "0.9"


def test_a_search_whose_objective_never_shows_is_an_error_not_a_pass(tuning):
    (tuning.root / "config" / "tune.yaml").write_text(CONFIG + "  - {Name: never, Regex:"
                                                      " 'never=([0-9.]+)'}\n")
    tuning.experiment("lr_search", search("Random", max_jobs=2).replace(
        "{metric: accuracy, type: Maximize}", "{metric: never, type: Maximize}"))
    result = tuning.run()
    result.assert_outcomes(errors=1)
    assert "no trial of the search reported its objective 'never'" in result.stdout.str()
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["verdict"].fillna("")) == ["error", ""]
    assert not (summary["best"] == "*").any()


def test_trials_side_by_side_under_xdist_share_the_workers_cores(monkeypatch):
    from sm_pytest.backends import local, local_tuning

    monkeypatch.setattr(local.contract, "cpu_cores", lambda: 16)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    session_backend = local.LocalBackend(extra_env=local.thread_share())
    assert session_backend.extra_env == {"OMP_NUM_THREADS": "8"}
    trials = local_tuning.trial_backend(session_backend, 3)
    assert trials.extra_env == {"OMP_NUM_THREADS": "2"}  # 16 cores / (2 workers x 3 trials)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's own setting is left alone
    assert local_tuning.trial_backend(local.LocalBackend(), 3).extra_env == {}


def test_a_half_written_epoch_line_is_not_read(tmp_path):
    from sm_pytest.backends.local_tuning import _steps
    from sm_pytest.spec.metrics import MetricDefinition

    log = tmp_path / "train.log"
    log.write_text("epoch=1 accuracy=0.91\nepoch=2 accuracy=0.")
    definitions = [MetricDefinition("accuracy", r"accuracy=([0-9.]+)")]
    assert _steps(log, definitions, "accuracy") == [0.91]
