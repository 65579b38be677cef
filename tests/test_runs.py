"""Running experiments through the local backend, as a user would, with a fast fake script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from conftest import INI, process_alive

PASSING = """
    base: config/base.yaml
    expect:
      accuracy: ">= 0.9"
      loss: "< 0.5"
"""


def assert_gone(pid: int) -> None:
    """The process has exited (a zombie waiting for a reaper counts as gone where /proc
    tells; elsewhere, as on macOS, os.kill(pid, 0) does)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} is still running")


def test_passing_run_leaves_artifacts_and_summary(project):
    project.experiment("baseline", PASSING)
    result = project.run()
    result.assert_outcomes(passed=1)
    attempt = project.artifacts / "baseline" / "default" / "attempt-0001"
    for name in ("hyperparameters.json", "command.json", "train.log", "metrics.csv",
                 "result.json", "model/model.txt", "input/config/hyperparameters.json"):
        assert (attempt / name).exists(), name
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["status"] == "completed"
    assert saved["final_metrics"] == {"loss": 0.1, "accuracy": 0.97}
    assert saved["metric_series"]["accuracy"] == [0.96, 0.97]
    result.stdout.fnmatch_lines(["*= sm-pytest runs =*", "*baseline*completed*pass*0.97*"])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert summary.loc[0, "verdict"] == "pass"
    assert summary.loc[0, "accuracy"] == 0.97
    assert "| baseline" in (project.artifacts / "summary.md").read_text()


def test_threshold_failure_shows_every_threshold_and_the_log_tail(project):
    project.experiment("weak", """
        base: config/base.yaml
        hyperparameters: {accuracy: 0.5, epochs: 40}
        expect:
          accuracy: ">= 0.9"
          loss: "< 5"
    """)
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*weak: 1 of 2 thresholds not met",
        "*metric    threshold  actual  verdict",
        "*accuracy  >= 0.9     0.5     FAIL",
        "*loss      < 5        0.1     pass",
        "*last 30 log lines*",
        "*epoch=40 loss=0.1000 accuracy=0.5000",
    ])
    assert "epoch=10 " not in result.stdout.str()  # only the tail
    assert "Traceback" not in result.stdout.str()


def test_crash_is_an_error_with_the_failure_reason(project):
    project.experiment("broken", """
        base: config/base.yaml
        hyperparameters: {crash: "CUDA out of memory"}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of broken*",
        "*broken: the run failed and produced no verdict",
        "reason: CUDA out of memory",
        "(exit code 3)",
        "*last * log lines*",
    ])
    attempt = project.artifacts / "broken" / "default" / "attempt-0001"
    assert "CUDA out of memory" in (attempt / "failure").read_text()
    assert json.loads((attempt / "result.json").read_text())["status"] == "failed"
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary["verdict"]) == ["error"]


def test_timeout_stops_the_whole_process_group(project):
    # The script starts a grandchild that would outlive a naive kill of the script alone.
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "child.pid"), "w") as f:
            f.write(str(child.pid))
        print("epoch=1 loss=0.5 accuracy=0.9", flush=True)
        time.sleep(60)
    """))
    project.experiment("slow", """
        base: config/base.yaml
        max_run: 2
        expect: {accuracy: ">= 0.5"}
    """)
    started = time.time()
    result = project.run()
    assert time.time() - started < 30
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*slow: the run timed out and produced no verdict",
                                 "reason: the run exceeded max_run (2 s) and was stopped"])
    assert_gone(int((project.artifacts / "slow/default/attempt-0001/model/child.pid").read_text()))


def test_rerun_never_overwrites_artifacts(project):
    project.experiment("baseline", PASSING)
    project.run().assert_outcomes(passed=1)
    project.run().assert_outcomes(passed=1)
    attempts = sorted(p.name for p in (project.artifacts / "baseline" / "default").iterdir())
    assert attempts == ["attempt-0001", "attempt-0002"]


def test_artifact_root_from_option_and_ini(project):
    project.experiment("baseline", PASSING)
    project.run("--sm-artifacts", "out").assert_outcomes(passed=1)
    assert (project.root / "out" / "baseline" / "default" / "attempt-0001").is_dir()
    project.pytester.makeini(INI + "sm_artifacts = from-ini\n")
    project.run().assert_outcomes(passed=1)
    assert (project.root / "from-ini" / "summary.csv").is_file()


def test_summary_has_one_row_per_run_with_swept_values(project):
    project.experiment("sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.95, 0.5]}
        expect: {accuracy: ">= 0.9"}
    """)
    project.experiment("baseline", PASSING)
    result = project.run()
    result.assert_outcomes(passed=2, failed=1)
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert list(summary.columns[:4]) == ["experiment", "run", "status", "verdict"]
    assert list(summary["run"]) == ["-", "accuracy=0.95", "accuracy=0.5"]
    assert list(summary["verdict"]) == ["pass", "pass", "fail"]
    assert {"loss", "duration_s", "artifacts"} <= set(summary.columns)


def test_junit_properties_carry_metrics_and_verdicts(project):
    project.experiment("baseline", PASSING)
    project.run("--junitxml", "junit.xml").assert_outcomes(passed=1)
    tree = ET.parse(project.root / "junit.xml")
    props = {p.get("name"): p.get("value") for p in tree.iter("property")}
    assert props["sm.verdict"] == "pass"
    assert props["sm.status"] == "completed"
    assert float(props["sm.metric.accuracy"]) == 0.97
    assert props["sm.check.accuracy"] == ">= 0.9 -> pass"


def test_tracking_store_keeps_runs_across_sessions(project):
    from sm_pytest.store.tracking import metrics_frame, runs_frame

    project.experiment("baseline", PASSING)
    project.run().assert_outcomes(passed=1)
    project.run().assert_outcomes(passed=1)
    runs = runs_frame(project.artifacts / "tracking.sqlite")
    assert len(runs) == 2 and runs["session"].nunique() == 2
    assert list(runs["verdict"]) == ["pass", "pass"] and list(runs["accuracy"]) == [0.97, 0.97]
    series = metrics_frame(project.artifacts / "tracking.sqlite")
    assert len(series[series.name == "accuracy"]) == 4


def test_xdist_summary_covers_every_worker(project):
    pytest.importorskip("xdist")
    project.experiment("sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.92, 0.93, 0.94]}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess("-n", "2")
    result.assert_outcomes(passed=4)
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert sorted(summary["accuracy"]) == [0.91, 0.92, 0.93, 0.94]
    from sm_pytest.store.tracking import runs_frame

    assert len(runs_frame(project.artifacts / "tracking.sqlite")) == 4


def test_s_streams_the_log_to_the_terminal(project):
    project.experiment("baseline", PASSING)
    result = project.run_subprocess("-s")
    result.stdout.fnmatch_lines(["[[]baseline] epoch=2 loss=0.1000 accuracy=0.9700"])


def test_ctrl_c_leaves_no_training_process(project):
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os, time
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "..", "..", "..", "..", "..",
                               "train.pid"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
    """))
    project.experiment("long", "base: config/base.yaml\nmax_run: 300\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid_file = project.root / "train.pid"
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the training script never started"
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert_gone(int(pid_file.read_text()))


def test_xdist_workers_share_the_cores():
    from sm_pytest.backends.local import thread_share

    cores = os.cpu_count() or 1
    assert thread_share({"PYTEST_XDIST_WORKER_COUNT": "2"}) == {
        "OMP_NUM_THREADS": str(max(1, cores // 2))}
    assert thread_share({"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "4"}) == {}
    assert thread_share({}) == {}


def test_run_that_cannot_start_is_an_error_with_a_summary_row(project):
    project.experiment("remote_data", """
        base: config/base.yaml
        inputs: {training: "s3://bucket/mnist/"}
        expect: {accuracy: ">= 0.9"}
    """)
    project.experiment("fine", PASSING)
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of remote_data*",
        "*input training (s3://bucket/mnist/) is on S3; a local run needs local folders*",
    ])
    summary = pd.read_csv(project.artifacts / "summary.csv").set_index("experiment")
    assert summary.loc["remote_data", "verdict"] == "error"
    assert summary.loc["remote_data", "status"] == "failed"
    assert summary.loc["fine", "verdict"] == "pass"
