"""A `tune:` item with --sm: one hyperparameter tuning job, run by the emulator with real
trials, driven the way a user runs it (pytest experiments -k lr_search --sm --sm-emulate)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import SM, needs_emulator, process_alive
from sm_pytest.store.tracking import runs_frame

pytestmark = needs_emulator

# A training script whose accuracy is a hyperparameter (plus --bonus): the search's objective
# is whatever the trial was given. It crashes with the optimizer "broken" or an accuracy above
# 1, and with --sleep it trains
# slowly (a child process of its own too, as a DataLoader worker would be; --pause: slowly,
# without one). It prints the objective that the tuning job put in its hyperparameters
# (input/config/hyperparameters.json).
TUNED_TRAIN = '''
import argparse, json, os, subprocess, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--accuracy", type=float, default=0.9)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--optimizer", default="sgd")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--pause", type=float, default=0.0)
parser.add_argument("--bonus", type=float, default=0.0)
args, _ = parser.parse_known_args()
accuracy = args.accuracy + args.bonus
print("argv", sys.argv[1:], flush=True)
# The service's own hyperparameter is no argument (the toolkit keeps it out of argv).
with open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")) as f:
    print("objective", json.load(f).get("_tuning_objective_metric"), flush=True)
if args.optimizer == "broken" or accuracy > 1:
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as failure:
        failure.write("optimizer 'broken' does not exist" if args.optimizer == "broken"
                      else f"accuracy {accuracy:.2f} is above 1")
    sys.exit(3)
if args.sleep:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
for epoch in range(1, args.epochs + 1):
    print(f"epoch={epoch} accuracy={accuracy - 0.01 * (args.epochs - epoch):.4f}",
          flush=True)
    time.sleep(args.sleep or args.pause)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as model:
    model.write("trained")
'''


def search(strategy: str = "Random", *, ranges: str, max_jobs: int = 4, parallel: int = 2,
           hyperparameters: str = "{epochs: 2}", expect: str = ">= 0.9") -> str:
    jobs = f"  max_jobs: {max_jobs}\n" if strategy != "Grid" else ""
    return (f"base: config/base.yaml\n"
            f"hyperparameters: {hyperparameters}\n"
            f"tune:\n  strategy: {strategy}\n"
            f"  objective: {{metric: accuracy, type: Maximize}}\n"
            f"{jobs}  max_parallel_jobs: {parallel}\n  random_seed: 7\n"
            f"  ranges:\n{ranges}"
            f"expect: {{accuracy: '{expect}'}}\n")


@pytest.fixture
def tuning(project):
    (project.root / "src" / "train.py").write_text(TUNED_TRAIN)
    return project


def trial_attempts(project, name: str = "lr_search") -> list:
    return [sorted(folder.glob("attempt-*"))[-1]
            for folder in sorted((project.artifacts / name).glob("default-trial*"))]


def test_a_random_search_is_a_tuning_job_judged_on_its_best_trial(tuning):
    tuning.experiment("lr_search", search(ranges="    accuracy: {min: 0.9, max: 0.99}\n"))
    result = tuning.run_subprocess("-k", "lr_search", *SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*lr-search-*: launched (lr_search, tuning job, Random, 4 trials, 2 at a time,"
        " ml.m5.xlarge)",
        "*lr-search-*: Completed: 4 completed, 0 running, 0 stopped, 0 failed;"
        " best accuracy 0.9* (lr-search-*-00?-*)"])

    search_dir = tuning.artifacts / "lr_search" / "default" / "attempt-0001"
    request = json.loads((search_dir / "request.json").read_text())
    assert request["HyperParameterTuningJobName"].startswith("lr-search-")
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Random" and config["RandomSeed"] == 7
    assert config["ResourceLimits"] == {"MaxParallelTrainingJobs": 2,
                                        "MaxNumberOfTrainingJobs": 4}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize",
                                                          "MetricName": "accuracy"}
    assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
        {"Name": "accuracy", "MinValue": "0.9", "MaxValue": "0.99", "ScalingType": "Auto"}]
    definition = request["TrainingJobDefinition"]
    assert "accuracy" not in definition["StaticHyperParameters"]
    assert definition["StaticHyperParameters"]["epochs"] == "2"
    assert "ExperimentConfig" not in definition
    describe = json.loads((search_dir / "describe.json").read_text())
    assert describe["HyperParameterTuningJobStatus"] == "Completed"

    attempts = trial_attempts(tuning)
    assert len(attempts) == 4
    accuracies = []
    for attempt in attempts:
        log = (attempt / "train.log").read_text()
        # The service's own hyperparameter reached the script, as on SageMaker.
        assert 'objective "accuracy"' in log, log
        assert (attempt / "model" / "model.txt").read_text() == "trained"
        saved = json.loads((attempt / "result.json").read_text())
        assert saved["status"] == "completed"
        assert saved["job_name"].startswith(request["HyperParameterTuningJobName"] + "-")
        accuracies.append(saved["final_metrics"]["accuracy"])
    assert len(set(accuracies)) == 4 and all(0.9 <= a <= 0.99 for a in accuracies)

    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["trial"]) == [1, 2, 3, 4]
    best = summary[summary["best"] == "*"]
    assert len(best) == 1 and best["accuracy"].iloc[0] == max(accuracies)
    assert list(summary["verdict"].fillna("")).count("pass") == 1
    assert best["job"].iloc[0] == describe["BestTrainingJob"]["TrainingJobName"]
    runs = runs_frame(tuning.artifacts / "tracking.sqlite")
    assert sorted(runs["trial"]) == [1, 2, 3, 4]


def test_a_failed_trial_is_reported_and_the_search_goes_on(tuning):
    tuning.experiment("lr_search", search("Grid", ranges=(
        "    optimizer: {values: [sgd, broken]}\n    accuracy: {values: [0.95]}\n")))
    result = tuning.run_subprocess(*SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*: Completed: 1 completed, 0 running, 0 stopped, 1 failed;*"])
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed", "failed"]
    assert list(summary["best"].fillna("")) == ["*", ""]
    failed = trial_attempts(tuning)[1]
    assert "optimizer 'broken' does not exist" in (failed / "failure").read_text()
    assert json.loads((failed / "describe.json").read_text())["TrainingJobStatus"] == "Failed"


# A user's conftest that reads, before the session's emulator goes, what SageMaker Experiments
# holds for lr_search, and the history --sm-history prints (history_frame, in process: the
# emulator lives only as long as the session).
DUMP_TRIAL_RUNS = '''
import json, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    import boto3
    from sm_pytest.sagemaker.experiments import history_frame
    from sm_pytest.sagemaker.names import run_group

    sm = boto3.client("sagemaker", region_name="us-east-1")
    found = {}
    for page in sm.get_paginator("list_trial_components").paginate(
            TrialName=run_group("lr-search")):
        for summary in page["TrialComponentSummaries"]:
            name = summary["TrialComponentName"]
            detail = sm.describe_trial_component(TrialComponentName=name)
            found[name] = {
                "display": detail.get("DisplayName"), "status": detail.get("Status", {}),
                "source": summary.get("TrialComponentSource"),
                "parameters": {k: v.get("NumberValue", v.get("StringValue"))
                               for k, v in (detail.get("Parameters") or {}).items()},
                "metrics": {m["MetricName"]: m.get("Last") for m in detail.get("Metrics") or []},
                "trials": sorted(t["TrialName"] for t in sm.list_trials(
                    TrialComponentName=name)["TrialSummaries"])}
    experiments = [e["ExperimentName"] for e in sm.list_experiments()["ExperimentSummaries"]]
    history = history_frame(boto3.Session(region_name="us-east-1"), "lr_search")
    history.to_csv("history.csv", index=False)
    with open("experiments.json", "w") as out:
        json.dump({"components": found, "experiments": experiments}, out)
'''


def test_each_trial_is_a_run_of_the_files_experiment_and_in_its_history(tuning):
    # Three trials of a Grid search, the third failing (accuracy 0.9 + 0.5 is above 1).
    tuning.experiment("lr_search", search("Grid", parallel=3, ranges=(
        "    bonus: {values: [0.03, 0.06, 0.5]}\n")))
    tuning.pytester.makeconftest(DUMP_TRIAL_RUNS)
    result = tuning.run_subprocess(*SM)
    result.assert_outcomes(passed=1)
    dumped = json.loads((tuning.root / "experiments.json").read_text())
    found = dumped["components"]
    trials = {}
    for attempt in trial_attempts(tuning):
        saved = json.loads((attempt / "result.json").read_text())
        trials[saved["job_name"]] = saved
    assert len(trials) == 3
    tuning_job = json.loads((tuning.artifacts / "lr_search" / "default" / "attempt-0001" /
                             "request.json").read_text())["HyperParameterTuningJobName"]
    # The service's own experiment of the tuning job, as on AWS; and the file's.
    assert {"lr-search", f"{tuning_job}-aws-tuning-job"} <= set(dumped["experiments"])

    runs = {name: run for name, run in found.items() if not run["source"]}
    assert sorted(runs) == sorted(f"lr-search-{job}" for job in trials)
    statuses = {}
    # Each trial's Run is told apart in Studio by its number.
    assert sorted(run["display"] for run in runs.values()) == [
        f"lr-search--trial-00{n}" for n in (1, 2, 3)]
    for job, saved in trials.items():
        run = runs[f"lr-search-{job}"]
        assert run["trials"] == ["Default-Run-Group-lr-search"]
        assert run["parameters"]["epochs"] == 2
        bonus = run["parameters"]["bonus"]
        statuses[bonus] = run["status"]
        if saved["status"] == "completed":
            assert run["metrics"]["accuracy"] == pytest.approx(0.9 + bonus)
        # The trial job's own component, also in the service's experiment.
        own = found[f"{job}-aws-training-job"]
        assert own["source"]["SourceArn"].endswith(f":training-job/{job}")
        assert own["trials"] == sorted(["Default-Run-Group-lr-search", f"{job}-aws-trial"])
    assert sorted(statuses) == [0.03, 0.06, 0.5]
    assert statuses[0.03]["PrimaryStatus"] == statuses[0.06]["PrimaryStatus"] == "Completed"
    assert statuses[0.5]["PrimaryStatus"] == "Failed"
    assert "accuracy 1.40 is above 1" in statuses[0.5]["Message"]

    history = pd.read_csv(tuning.root / "history.csv").sort_values("bonus")
    assert len(history) == 3  # one row per trial; SageMaker's own components are not runs
    assert set(history["trial_component"]) == set(runs)
    assert list(history["experiment"]) == ["lr-search"] * 3
    assert list(history["bonus"]) == [0.03, 0.06, 0.5]
    assert list(history["accuracy"])[:2] == pytest.approx([0.93, 0.96])
    assert pd.isna(list(history["accuracy"])[2])  # the failed trial logged no accuracy


def test_a_search_whose_trials_all_fail_is_an_error_listing_them(tuning):
    tuning.experiment("lr_search", search("Grid", ranges=(
        "    optimizer: {values: [broken]}\n    accuracy: {values: [0.95, 0.96]}\n")))
    result = tuning.run_subprocess(*SM)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*optimizer 'broken' does not exist*",
                                 "*2 trials of lr_search (Grid, Maximize accuracy; no trial*",
                                 "*1*failed*"])


def test_searches_under_xdist_are_launched_by_their_workers(tuning):
    tuning.experiment("lr_search", search(ranges="    accuracy: {min: 0.9, max: 0.99}\n",
                                          max_jobs=2))
    tuning.experiment("other_search", search(ranges="    accuracy: {min: 0.9, max: 0.99}\n",
                                             max_jobs=3, parallel=1))
    tuning.run_subprocess(*SM, "-n", "2").assert_outcomes(passed=2)
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert sorted(zip(summary["experiment"], summary["trial"], strict=True)) == [
        ("lr_search", 1), ("lr_search", 2),
        ("other_search", 1), ("other_search", 2), ("other_search", 3)]
    assert (summary["best"] == "*").sum() == 2


def test_a_search_on_spot_is_refused_at_launch(tuning):
    tuning.experiment("lr_search", search(ranges="    accuracy: {min: 0.9, max: 0.99}\n"))
    result = tuning.run_subprocess(*SM, "--spot")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*lr_search.yaml:3: a tune: item cannot run on spot"
                                 " capacity (spot from --spot)*"])
    assert not list((tuning.artifacts / "lr_search").glob("default-trial*"))


def test_a_search_the_session_ends_before_is_stopped_and_keeps_its_trials(tuning):
    tuning.experiment("a_broken", "base: config/base.yaml\n"
                                  "hyperparameters: {optimizer: broken}\n")
    tuning.experiment("lr_search", search(
        ranges="    accuracy: {min: 0.9, max: 0.99}\n", max_jobs=6,
        hyperparameters="{epochs: 2, sleep: 3}"))
    result = tuning.run_subprocess(*SM, "-x")  # the first item fails: the search is not awaited
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*stopped SageMaker jobs that were still running:"
                                 " lr-search-*"])
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    trials = summary[summary["experiment"] == "lr_search"]
    assert list(trials["trial"]) == list(range(1, len(trials) + 1)) and len(trials) >= 1
    assert set(trials["status"]) <= {"completed", "stopped"}
    for attempt in trial_attempts(tuning):
        assert (attempt / "train.log").exists() and (attempt / "result.json").exists()


def test_sigterm_mid_search_stops_the_tuning_job_and_keeps_its_trials(tuning):
    tuning.experiment("lr_search", search(
        ranges="    accuracy: {min: 0.9, max: 0.99}\n", max_jobs=6,
        hyperparameters="{epochs: 2, sleep: 120}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", *SM],
        cwd=tuning.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if ": InProgress: 0 completed, 2 running" in line:
                break
        training = _training_processes(process.pid, 4)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    output = "".join(lines) + rest
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "stopped SageMaker jobs on interrupt: lr-search-" in output, output
    deadline = time.time() + 15
    while time.time() < deadline and any(process_alive(pid) for pid in training):
        time.sleep(0.1)
    assert not any(process_alive(pid) for pid in training), output
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["interrupted", "interrupted"], output
    assert list(summary["trial"]) == [1, 2]
    for attempt in trial_attempts(tuning):
        assert "epoch=1" in (attempt / "train.log").read_text()
        assert json.loads((attempt / "result.json").read_text())["status"] == "interrupted"
    assert sorted(runs_frame(tuning.artifacts / "tracking.sqlite")["trial"]) == [1, 2]


def _training_processes(pid: int, count: int) -> set[int]:
    """The trials' scripts and their children below `pid`, once `count` of them run."""
    from test_signals import _cmdline, descendants

    deadline = time.time() + 60
    found: set[int] = set()
    while time.time() < deadline and len(found) < count:
        found = {p for p in descendants(pid)
                 if "sleep(300)" in _cmdline(p) or "train.py" in _cmdline(p)}
        time.sleep(0.2)
    assert len(found) >= count, found
    return found


# --- early stopping and live lines, through the emulator ----------------------------------


def test_trials_the_tuning_job_stops_early_read_stopped_early(tuning):
    """Three good trials (one at a time) set the median; the two clearly worse ones after
    them are stopped by the emulated service at their first epochs."""
    tuning.experiment("lr_search", search("Grid", parallel=1, hyperparameters=(
        "{epochs: 5, pause: 0.4}"), ranges=(
        "    accuracy: {values: [0.95, 0.96, 0.97, 0.2, 0.3]}\n")).replace(
        "  random_seed: 7\n", "  random_seed: 7\n  early_stopping: Auto\n"))
    result = tuning.run_subprocess("-k", "lr_search", *SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*lr-search-*: Completed: 3 completed, 0 running,"
                                 " 2 stopped, 0 failed; best accuracy 0.97 (*-003-*)"])
    summary = pd.read_csv(tuning.artifacts / "summary.csv")
    assert list(summary["status"]) == ["completed"] * 3 + ["stopped early"] * 2
    assert list(summary["best"].fillna("")) == ["", "", "*", "", ""]
    for attempt in trial_attempts(tuning)[3:]:
        assert (attempt / "train.log").read_text().count("epoch=") < 5
        saved = json.loads((attempt / "result.json").read_text())
        assert saved["status"] == "stopped"
        assert "stopped it early (early stopping)" in saved["failure_reason"]
    describe = json.loads((tuning.artifacts / "lr_search" / "default" / "attempt-0001"
                           / "describe.json").read_text())
    assert describe["TrainingJobStatusCounters"]["Stopped"] == 2


def test_each_running_trial_prints_its_live_metric_lines(tuning):
    tuning.experiment("lr_search", search("Grid", parallel=2, hyperparameters=(
        "{epochs: 3, pause: 0.3}"), ranges="    accuracy: {values: [0.91, 0.93]}\n"))
    result = tuning.run_subprocess("-k", "lr_search", *SM)
    result.assert_outcomes(passed=1)
    # As a job's: from its CloudWatch log through the metric definitions, the last values
    # once it ended; each line names its trial.
    result.stdout.fnmatch_lines_random(["*lr_search trial ?: epoch 3  accuracy=0.91  (*s)",
                                        "*lr_search trial ?: epoch 3  accuracy=0.93  (*s)"])


# --- how a trial's end is read, against a stand-in service --------------------------------


class _Service:
    """The SageMaker answers of one tuning job that has ended: trial 001 completed, 002 was
    stopped by the service's early stopping."""

    def __init__(self):
        self.trials = {
            "lr-search-abc123000-001-0000aaaa": ("Completed", "0.5", 0.93),
            "lr-search-abc123000-002-0000bbbb": ("Stopped", "0.9", None),
        }

    def create_hyper_parameter_tuning_job(self, **request):
        self.request = request

    def describe_hyper_parameter_tuning_job(self, HyperParameterTuningJobName):
        return {"HyperParameterTuningJobName": HyperParameterTuningJobName,
                "HyperParameterTuningJobStatus": "Completed",
                "TrainingJobStatusCounters": {"Completed": 1, "Stopped": 1}}

    def list_training_jobs_for_hyper_parameter_tuning_job(self, **params):
        return {"TrainingJobSummaries": [
            {"TrainingJobName": name, "TrainingJobStatus": status,
             "TunedHyperParameters": {"accuracy": accuracy}}
            for name, (status, accuracy, _) in self.trials.items()]}

    def describe_training_job(self, TrainingJobName):
        return {"TrainingJobName": TrainingJobName,
                "TrainingJobStatus": self.trials[TrainingJobName][0]}


class _Backend:
    def __init__(self, tmp_path):
        from sm_pytest.sagemaker.settings import SageMakerSettings

        self.sm = _Service()
        self.lines: list[str] = []
        self.settings = SageMakerSettings(role="arn:aws:iam::123456789012:role/r",
                                          region="us-east-1", bucket="b")
        self.stopped: list[str] = []
        self.poll_interval = 0.0
        self.followed: list[tuple[str, bool]] = []
        self.experiments = None  # no SageMaker Experiments for the stand-in's trials

    def tick(self):
        pass

    def follow_log(self, handle, ended):
        self.followed.append((handle.job_name, ended))

    def training_request(self, run, settings, job_name):
        definitions = [{"Name": d.name, "Regex": d.regex} for d in run.metric_definitions]
        return {"AlgorithmSpecification": {"MetricDefinitions": definitions},
                "HyperParameters": {"epochs": "2"}}, []

    def settings_for(self, run):
        return self.settings

    def progress(self, line):
        self.lines.append(line)

    def collect(self, handle):
        from sm_pytest.model import COMPLETED, STOPPED, RunResult

        accuracy = self.sm.trials[handle.job_name][2]
        return RunResult(status=COMPLETED if handle.status == "Completed" else STOPPED,
                         artifact_dir=handle.attempt_dir,
                         log_path=handle.attempt_dir / "train.log",
                         model_dir=handle.attempt_dir / "model", job_name=handle.job_name,
                         final_metrics={} if accuracy is None else {"accuracy": accuracy})


def _stand_in_search(tmp_path, backend):
    from sm_pytest.backends.sagemaker_tuning import TuningSearch
    from sm_pytest.spec.experiment_file import RunSpec
    from sm_pytest.spec.metrics import MetricDefinition
    from sm_pytest.spec.tuning import CONTINUOUS, Range, TuneSpec

    tune = TuneSpec(strategy="Bayesian", objective_metric="accuracy", objective_type="Maximize",
                    max_jobs=2, max_parallel_jobs=2, early_stopping="Auto",
                    ranges=(Range("accuracy", CONTINUOUS, min=0.5, max=0.99),))
    run = RunSpec(experiment="lr_search", run_id="", path=tmp_path / "lr_search.yaml", line=1,
                  description="", source_dir=tmp_path, entry_point="train.py",
                  hyperparameters={"epochs": 2}, swept={}, inputs={},
                  metric_definitions=(MetricDefinition("accuracy", r"accuracy=([0-9.]+)"),),
                  expect=(), marks=(), max_run=60, tune=tune)
    search_dir = tmp_path / "lr_search" / "default" / "attempt-0001"
    search_dir.mkdir(parents=True)
    return TuningSearch(backend, run, tmp_path, search_dir, "lr-search-abc123000"), search_dir


def test_trials_stopped_by_early_stopping_are_marked_so_and_have_no_objective(tmp_path):
    search, search_dir = _stand_in_search(tmp_path, _Backend(tmp_path))
    search.launch()
    trials = search.wait()

    assert search.backend.sm.request["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"

    assert [(t.number, t.values, t.stopped_early, t.objective) for t in trials] == [
        (1, {"accuracy": 0.5}, False, 0.93), (2, {"accuracy": 0.9}, True, None)]
    assert trials[1].result.status == "stopped"
    assert "early stopping" in trials[1].result.failure_reason
    assert trials[1].run.folder == "default-trial002"
    assert (tmp_path / "lr_search" / "default-trial002" / "attempt-0001" / "result.json").exists()
    assert search.result is trials[0].result  # the item's result: its best trial's
    assert (search_dir / "describe.json").exists()
    # Each trial's log was followed for live lines, its last ones once it had ended.
    assert sorted(search.backend.followed) == [("lr-search-abc123000-001-0000aaaa", True),
                                               ("lr-search-abc123000-002-0000bbbb", True)]


def test_live_lines_that_cannot_be_followed_cost_no_trial(tmp_path):
    class Unfollowable(_Backend):
        def follow_log(self, handle, ended):
            raise RuntimeError("no CloudWatch here")

    search, _ = _stand_in_search(tmp_path, Unfollowable(tmp_path))
    search.launch()
    trials = search.wait()
    assert [t.number for t in trials] == [1, 2] and all(t.result for t in trials)
    said = [line for line in search.backend.lines if "no live lines" in line]
    assert said == ["lr-search-abc123000: no live lines for its trials: no CloudWatch here\n"]
