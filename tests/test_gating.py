"""Regression gating as CI uses it: baselines with tolerances, the run cache, reports and
the plan, driven through pytest like a user would."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

SWEEP = """
    base: config/base.yaml
    hyperparameters: {accuracy: 0.95}
    matrix: {seed: [1, 2]}
    tolerances:
      accuracy: {direction: higher, max_drop: 0.01}
      loss: {direction: lower, max_drop: "10%"}
"""


def set_accuracy(project, name, accuracy, body=SWEEP):
    project.experiment(name, body.replace("accuracy: 0.95", f"accuracy: {accuracy}"))


def test_save_then_compare_passes(project):
    set_accuracy(project, "sweep", 0.95)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=2)
    saved = json.loads((project.root / "baselines" / "main.json").read_text())
    assert saved["runs"]["sweep[seed=1]"]["metrics"]["accuracy"]["mean"] == 0.95
    result = project.run("--sm-baseline", "main")
    result.assert_outcomes(passed=2)


def test_regression_fails_only_its_own_item_with_a_table(project):
    project.experiment("sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.95, 0.96]}
        tolerances: {accuracy: {direction: higher, max_drop: 0.01}}
    """)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=2)
    baseline = project.root / "baselines" / "main.json"
    data = json.loads(baseline.read_text())
    # pretend the second run used to be much better: now it regressed by 0.03
    data["runs"]["sweep[accuracy=0.96]"]["metrics"]["accuracy"]["mean"] = 0.99
    baseline.write_text(json.dumps(data))
    result = project.run("--sm-baseline", "main", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*sweep[[]accuracy=0.96]: worse than baseline 'main' beyond tolerance",
        "*metric*baseline*now*delta*allowed*verdict*",
        "*accuracy*0.99*0.96*-0.03*0.01*REGRESSED*",
    ])
    assert "FAILED experiments/sweep.yaml::sweep[accuracy=0.96]" in result.stdout.str()
    props = {}
    for case in ET.parse(project.root / "junit.xml").iter("testcase"):
        props[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["sweep[accuracy=0.96]"]["sm.gate.accuracy"] == "regressed"
    assert float(props["sweep[accuracy=0.96]"]["sm.delta.accuracy"]) == pytest.approx(-0.03)
    assert props["sweep[accuracy=0.95]"]["sm.gate.accuracy"] == "ok"
    markdown = (project.artifacts / "summary.md").read_text()
    assert "Δ accuracy" in markdown and "▼ -0.0300" in markdown
    assert "1 of 2 runs passed" in markdown


def test_lower_is_better_with_relative_tolerance(project):
    set_accuracy(project, "sweep", 0.95)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=2)
    # loss doubles (0.1 -> 0.2): beyond 10% of 0.1
    project.experiment("sweep", SWEEP.replace("accuracy: 0.95}", "accuracy: 0.95, loss: 0.2}"))
    result = project.run("--sm-baseline", "main")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*loss*0.1*0.2*+0.1*0.01*REGRESSED*"])


def test_improvement_beyond_tolerance_is_reported(project):
    set_accuracy(project, "sweep", 0.90)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=2)
    set_accuracy(project, "sweep", 0.95)
    result = project.run("--sm-baseline", "main")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*accuracy improved beyond tolerance; refresh the baseline"
                                 " with --sm-save-baseline main"])


def test_missing_entry_passes_with_a_notice_or_fails_when_strict(project):
    set_accuracy(project, "sweep", 0.95)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=2)
    project.experiment("newcomer", "base: config/base.yaml\n")
    result = project.run("--sm-baseline", "main")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["newcomer: no entry in baseline 'main'*"])
    strict = project.run("--sm-baseline", "main", "--sm-baseline-strict")
    strict.assert_outcomes(passed=2, failed=1)
    strict.stdout.fnmatch_lines(["*newcomer: no entry in baseline 'main'*"])


def test_repeats_use_the_mean_and_a_sigma_band(project):
    # accuracy is 0.95 + seed/1000 noise: repeats over seeds 1..3
    (project.root / "src" / "train.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--seed', type=int)\n"
        "p.add_argument('--shift', type=float, default=0)\na, _ = p.parse_known_args()\n"
        "print(f'accuracy={0.95 + (a.seed % 3) * 0.01 - a.shift:.4f}')\n")
    body = """
        base: config/base.yaml
        hyperparameters: {seed: 1, shift: 0}
        repeat: 3
        tolerances: {accuracy: {direction: higher, max_drop: 0.001, k: 2}}
    """
    project.experiment("noisy", body)
    project.run("--sm-save-baseline", "main").assert_outcomes(passed=1)
    saved = json.loads((project.root / "baselines" / "main.json").read_text())
    stats = saved["runs"]["noisy"]["metrics"]["accuracy"]
    assert stats["n"] == 3 and stats["std"] > 0
    # a small shift stays inside k * sigma; a large one does not
    project.experiment("noisy", body.replace("shift: 0", "shift: 0.005"))
    project.run("--sm-baseline", "main").assert_outcomes(passed=1)
    project.experiment("noisy", body.replace("shift: 0", "shift: 0.05"))
    result = project.run("--sm-baseline", "main")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*accuracy*(n=3)*REGRESSED*"])
    assert len(list((project.artifacts / "noisy").iterdir())) == 3  # one folder per repeat
    # The tracking store holds every repeat as a run of its own, with its seed and series.
    from sm_pytest.tracking import metrics_frame, runs_frame

    runs = runs_frame(project.artifacts / "tracking.sqlite")
    first_session = runs[runs.session == runs.session.iloc[0]]
    assert list(first_session.repeat_index) == [1, 2, 3]
    assert sorted(first_session.accuracy) == [0.95, 0.96, 0.97]
    series = metrics_frame(project.artifacts / "tracking.sqlite")
    assert series[series.run_pk.isin(first_session.run_pk)].run_pk.nunique() == 3


def test_corrupted_or_foreign_baseline_is_a_clear_error_and_changes_nothing(project):
    set_accuracy(project, "sweep", 0.95)
    folder = project.root / "baselines"
    folder.mkdir()
    for text in ('{"runs": ', '{"name": "my-app", "version": "1.0.0"}'):
        (folder / "main.json").write_text(text)
        result = project.run("--sm-baseline", "main", "--sm-save-baseline", "main")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*baselines/main.json*"])
        assert (folder / "main.json").read_text() == text
        assert not project.artifacts.exists()


def test_reuse_skips_unchanged_runs_and_retrains_changed_ones(project):
    set_accuracy(project, "sweep", 0.95)
    project.run().assert_outcomes(passed=2)
    result = project.run("--sm-reuse")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["run cache: 2 reused, 0 trained"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["status"]) == ["cached", "cached"]
    assert len(list((project.artifacts / "sweep" / "seed=1").iterdir())) == 1  # not retrained
    # each part of the fingerprint: hyperparameters, code, data
    set_accuracy(project, "sweep", 0.96)
    project.run("--sm-reuse").stdout.fnmatch_lines(["run cache: 0 reused, 2 trained",
                                                    "*hyperparameters changed*"])
    with open(project.root / "src" / "train.py", "a") as script:
        script.write("# a change\n")
    project.run("--sm-reuse").stdout.fnmatch_lines(["*source changed*"])
    (project.root / "data" / "sample.txt").write_text("other data")
    project.run("--sm-reuse").stdout.fnmatch_lines(["*data changed*"])
    # nothing changed since: reused; --sm-rerun forces training
    project.run("--sm-reuse").stdout.fnmatch_lines(["run cache: 2 reused, 0 trained"])
    project.run("--sm-reuse", "--sm-rerun").assert_outcomes(passed=2)
    assert len(list((project.artifacts / "sweep" / "seed=1").iterdir())) == 5


def test_thresholds_are_rejudged_on_cached_metrics(project):
    set_accuracy(project, "sweep", 0.95)
    project.run().assert_outcomes(passed=2)
    project.experiment("sweep", SWEEP + "    expect: {accuracy: '>= 0.99'}\n")
    result = project.run("--sm-reuse")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["run cache: 2 reused, 0 trained"])


def test_plots_are_valid_pngs_linked_from_the_summary(project):
    pytest.importorskip("matplotlib")
    project.experiment("sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.95]}
        expect: {accuracy: ">= 0.9"}
    """)
    # In a subprocess: pytester's in-process runs drop the modules they imported, and a
    # half-dropped matplotlib breaks later in-process users of it.
    project.run_subprocess("--sm-plots").assert_outcomes(passed=2)
    curve = project.artifacts / "sweep" / "accuracy=0.91" / "attempt-0001" / "learning_curve.png"
    sweep = project.artifacts / "plots" / "sweep-accuracy-vs-accuracy.png"
    for png in (curve, sweep):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (project.artifacts / "summary.md").read_text()
    assert "(plots/sweep-accuracy-vs-accuracy.png)" in markdown
    assert "(sweep/accuracy=0.91/attempt-0001/learning_curve.png)" in markdown


def test_plan_shows_backend_spot_reuse_and_cost_bound(project):
    (project.root / "config" / "sagemaker.yaml").write_text(
        "instance_type: ml.m5.xlarge\nmax_run: 3600\nkeep_alive: 0\n"
        "prices: {ml.m5.xlarge: 0.23}\n")
    set_accuracy(project, "sweep", 0.95)
    project.pytester.makeini("[pytest]\nsm_config = config/sagemaker.yaml\n")
    result = project.run("--sm", "--spot", "--sm-region", "us-east-1", "--sm-plan")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*sm-pytest plan*", "*sweep[[]seed=1]*sagemaker*ml.m5.xlarge*"
                                 "yes*", "*at most $*"])
    assert not project.artifacts.exists()  # nothing ran
    local = project.run("--sm-plan")
    local.stdout.fnmatch_lines(["*sweep[[]seed=1]*local*"])
