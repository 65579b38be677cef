"""The --sm path end to end, against the in-process emulator (--sm-emulate): every job
really runs its script per the container contract, and the test asserts what would have been
sent to AWS."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

pytest.importorskip("moto")
pytest.importorskip("sagemaker.core")

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
PASSING = """
    base: config/base.yaml
    expect:
      accuracy: ">= 0.9"
"""


def attempt_dir(project, experiment, run="default"):
    return project.artifacts / experiment / run / "attempt-0001"


def test_spot_run_passes_with_logs_model_and_request(project):
    project.experiment("baseline", PASSING)
    result = project.run_subprocess(*SM, "--spot")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline-*: launched (baseline, ml.m5.xlarge, spot)",
                                 "*baseline-*: Completed*"])
    attempt = attempt_dir(project, "baseline")
    assert "epoch=2 loss=0.1000 accuracy=0.9700" in (attempt / "train.log").read_text()
    assert (attempt / "model" / "model.txt").read_text() == "trained"
    request = json.loads((attempt / "request.json").read_text())
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] >= (
        request["StoppingCondition"]["MaxRuntimeInSeconds"])
    assert request["CheckpointConfig"]["S3Uri"].startswith("s3://")
    assert json.loads(request["HyperParameters"]["sagemaker_program"]) == "train.py"
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert summary.loc[0, "job"].startswith("baseline-")
    assert summary.loc[0, "instance"] == "ml.m5.xlarge"
    assert 0 <= summary.loc[0, "spot_saving"] < 1  # whole seconds: a short job saves ~0
    assert summary.loc[0, "accuracy"] == 0.97


def test_sweep_jobs_are_all_launched_before_any_is_awaited(project):
    project.experiment("sweep", """
        base: config/base.yaml
        hyperparameters: {sleep: 1}
        matrix: {accuracy: [0.91, 0.92, 0.93]}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM, "--sm-max-parallel", "3")
    result.assert_outcomes(passed=3)
    lines = result.stdout.lines
    launched = [i for i, line in enumerate(lines) if ": launched (" in line]
    completed = [i for i, line in enumerate(lines) if ": Completed" in line]
    assert len(launched) == 3 and len(completed) == 3
    assert max(launched) < min(completed)


def test_crashing_job_is_an_error_with_failure_reason_and_logs(project):
    project.experiment("broken", """
        base: config/base.yaml
        hyperparameters: {crash: "CUDA out of memory"}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*broken: the run failed and produced no verdict",
                                 "reason: *CUDA out of memory*", "*last * log lines*",
                                 "*epoch=2*"])
    attempt = attempt_dir(project, "broken")
    assert "epoch=2" in (attempt / "train.log").read_text()
    assert json.loads((attempt / "describe.json").read_text())["TrainingJobStatus"] == "Failed"


def test_missing_role_and_bucket_is_one_error_before_launch(project, monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    project.experiment("baseline", PASSING)
    result = project.run_subprocess("--sm", "--sm-region", "us-east-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nothing was launched*"])
    text = result.stderr.str()
    assert "role" in text and "bucket" in text
    assert not (project.artifacts / "baseline").exists()


def test_spot_interruption_resumes_from_checkpoints(project, monkeypatch):
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import json, os, time
        ckpt = os.path.join(os.environ["SM_CHECKPOINT_DIR"], "state.json")
        start = json.load(open(ckpt))["epoch"] if os.path.exists(ckpt) else 0
        if start:
            print(f"resuming from checkpoint at epoch {start}", flush=True)
        for epoch in range(start + 1, 4):
            time.sleep(0.5)
            print(f"epoch={epoch} accuracy={0.9 + epoch / 100:.2f}", flush=True)
            with open(ckpt + ".tmp", "w") as f:
                json.dump({"epoch": epoch}, f)
            os.replace(ckpt + ".tmp", ckpt)
        open(os.path.join(os.environ["SM_MODEL_DIR"], "epochs.txt"), "w").write(str(epoch))
    """))
    project.experiment("resumable", PASSING)
    monkeypatch.setenv("SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS", "resumable")
    result = project.run_subprocess(*SM, "--spot")
    result.assert_outcomes(passed=1)
    attempt = attempt_dir(project, "resumable")
    log = (attempt / "train.log").read_text()
    assert "resuming from checkpoint at epoch" in log
    assert (attempt / "model" / "epochs.txt").read_text() == "3"
    describe = json.loads((attempt / "describe.json").read_text())
    assert "Interrupted" in [t["Status"] for t in describe["SecondaryStatusTransitions"]]


def test_malicious_model_archive_is_refused(project):
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os
        print("epoch=1 accuracy=0.99", flush=True)
        os.symlink("/etc/passwd", os.path.join(os.environ["SM_MODEL_DIR"], "escape"))
    """))
    project.experiment("evil", PASSING)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*refused the job's model.tar.gz, which is unsafe*"])
    assert not (attempt_dir(project, "evil") / "model" / "escape").exists()


def test_throttled_creates_are_retried(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE", "2")
    project.experiment("baseline", PASSING)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ThrottlingException, retrying in*"])


def test_more_than_fifty_runs_in_one_experiment_stop_before_launch(project):
    values = ", ".join(str(i) for i in range(51))
    project.experiment("huge", f"base: config/base.yaml\nmatrix: {{seed: [{values}]}}\n")
    result = project.run_subprocess(*SM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nothing was launched*51 runs*more than the 50*"])


def test_ctrl_c_stops_every_launched_job(project):
    project.experiment("slow", """
        base: config/base.yaml
        hyperparameters: {sleep: 120}
        max_run: 300
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", *SM],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 60
    for line in process.stdout:
        lines.append(line)
        if ": InProgress" in line or time.time() > deadline:
            break
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    output = "".join(lines) + rest
    assert "stopped SageMaker jobs on interrupt: slow-" in output, output
    # The job's log so far and its result are saved even though nobody waited for it.
    attempt = attempt_dir(project, "slow")
    assert json.loads((attempt / "result.json").read_text())["status"] == "stopped"
    assert "starting" in (attempt / "train.log").read_text()


def test_exit_first_saves_the_jobs_it_did_not_wait_for(project):
    project.experiment("a_crash", """
        base: config/base.yaml
        hyperparameters: {crash: "diverged"}
    """)
    project.experiment("b_done", PASSING)
    project.experiment("c_slow", """
        base: config/base.yaml
        hyperparameters: {sleep: 120}
        max_run: 300
    """)
    result = project.run_subprocess(*SM, "-x")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*stopped SageMaker jobs that were still running: c-slow-*"])
    result.stdout.fnmatch_lines(["saved the results and logs of 2 job(s) this session did not"
                                 " wait for: */b_done/default/attempt-0001, */c_slow/*"])
    done = json.loads((attempt_dir(project, "b_done") / "result.json").read_text())
    assert done["status"] == "completed" and done["final_metrics"]["accuracy"] == 0.97
    slow = json.loads((attempt_dir(project, "c_slow") / "result.json").read_text())
    assert slow["status"] == "stopped"
    assert "this session ended before the job did" in slow["failure_reason"]


def test_fifty_component_limit_rolls_over_to_a_new_experiment():
    import boto3

    from sm_pytest.sagemaker.emulator.service import Emulator
    from sm_pytest.sagemaker.experiments import SageMakerExperiments, run_group
    from sm_pytest.spec.experiment_file import RunSpec

    notices = []
    with Emulator(region="us-east-1"):
        session = boto3.Session(region_name="us-east-1")
        client = session.client("sagemaker")
        client.create_experiment(ExperimentName="sweep")
        client.create_trial(TrialName=run_group("sweep"), ExperimentName="sweep")
        for i in range(48):
            client.create_trial_component(TrialComponentName=f"old-{i}")
            client.associate_trial_component(TrialComponentName=f"old-{i}",
                                             TrialName=run_group("sweep"))
        tracker = SageMakerExperiments(session, notice=notices.append)
        runs = [RunSpec(experiment="sweep", run_id=f"seed={i}", path=None, line=1,
                        description="", source_dir=None, entry_point="train.py",
                        hyperparameters={}, swept={}, inputs={}, metric_definitions=(),
                        expect=(), marks=(), max_run=60) for i in range(3)]
        tracker.plan(runs)
    assert tracker.names == {"sweep": "sweep--2"}
    assert notices == ["SageMaker experiment 'sweep' holds 48 of 50 runs; this session's 3 go"
                       " to 'sweep--2'"]


def test_job_past_max_run_is_a_timeout_error(project):
    project.experiment("slow", """
        base: config/base.yaml
        hyperparameters: {sleep: 60}
        sagemaker: {max_run: 2}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*slow: the run timed out and produced no verdict",
                                 "reason: the job exceeded MaxRuntimeInSeconds (2 s)*"])


def test_xdist_workers_launch_their_own_jobs(project):
    pytest.importorskip("xdist")
    project.experiment("sweep", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.92]}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM, "-n", "2")
    result.assert_outcomes(passed=2)
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert sorted(summary["accuracy"]) == [0.91, 0.92]
    assert summary["job"].str.startswith("sweep-accuracy-").all()


def test_experiment_history_lists_every_run_with_metrics(tmp_path):
    import boto3

    from sm_pytest.model import COMPLETED, RunResult
    from sm_pytest.sagemaker.emulator.service import Emulator
    from sm_pytest.sagemaker.experiments import SageMakerExperiments, history_frame
    from sm_pytest.spec.experiment_file import RunSpec

    with Emulator(region="us-east-1"):
        session = boto3.Session(region_name="us-east-1")
        tracker = SageMakerExperiments(session, notice=print)
        runs = [RunSpec(experiment="lr_sweep", run_id=f"lr={lr}", path=None, line=1,
                        description="", source_dir=None, entry_point="train.py",
                        hyperparameters={"lr": lr, "epochs": 2}, swept={"lr": lr}, inputs={},
                        metric_definitions=(), expect=(), marks=(), max_run=60)
                for lr in (0.1, 1.0)]
        tracker.plan(runs)
        for i, run in enumerate(runs):
            config = tracker.start_run(run, f"lr-sweep-job-{i}")
            assert config["ExperimentName"] == "lr-sweep"
            tracker.finish_run(run, RunResult(
                status=COMPLETED, artifact_dir=tmp_path, log_path=tmp_path, model_dir=tmp_path,
                job_name=f"lr-sweep-job-{i}",
                metric_series={"test_accuracy": [0.9, 0.95 + i / 100]}))
        frame = history_frame(session, "lr-sweep")
        # The SDK's own ExperimentAnalytics works in the emulator (moto alone refuses its
        # Parents.ExperimentName search), so history_frame took the path it takes on AWS.
        from sagemaker.core.analytics import ExperimentAnalytics

        from sm_pytest.sagemaker.experiments import sdk_session

        analytics = ExperimentAnalytics(experiment_name="lr-sweep",
                                        sagemaker_session=sdk_session(session)).dataframe()
        assert len(analytics) == 2 and "test_accuracy - Last" in analytics
        assert list(analytics["Experiments"]) == [["lr-sweep"], ["lr-sweep"]]
        other = ExperimentAnalytics(experiment_name="elsewhere",
                                    sagemaker_session=sdk_session(session)).dataframe()
        assert other.empty
    assert list(frame.columns[:2]) == ["run", "trial_component"]
    assert len(frame) == 2
    assert sorted(frame["lr"]) == [0.1, 1.0]
    assert sorted(frame["test_accuracy"]) == [0.95, 0.96]
