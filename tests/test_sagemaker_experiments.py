"""SageMaker Experiments on the --sm path, against the emulator: names the service accepts,
the 50-runs-per-group quota as SageMaker counts it (also under pytest-xdist), Run status
that follows the job, and the --sm-history command."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pandas as pd
import pytest

pytest.importorskip("moto")
pytest.importorskip("sagemaker.core")

from sm_pytest.model import COMPLETED, FAILED, RunResult  # noqa: E402
from sm_pytest.sagemaker import names  # noqa: E402
from sm_pytest.spec.experiment_file import RunSpec  # noqa: E402

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
LONG_NAME = "learning_rate_sweep_for_the_mnist_cnn_regression_gate_weekly"
# A user's conftest that reads what SageMaker Experiments holds before the session ends
# (the emulator goes with the session).
DUMP_EXPERIMENTS = '''
import json, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    import boto3
    sm = boto3.client("sagemaker", region_name="us-east-1")
    found = {}
    for page in sm.get_paginator("list_trial_components").paginate():
        for summary in page["TrialComponentSummaries"]:
            detail = sm.describe_trial_component(TrialComponentName=summary["TrialComponentName"])
            found[detail["TrialComponentName"]] = {
                "status": detail.get("Status", {}), "display": detail.get("DisplayName"),
                "source": summary.get("TrialComponentSource"),
                "trials": [t["TrialName"] for t in sm.list_trials(
                    TrialComponentName=detail["TrialComponentName"])["TrialSummaries"]]}
    with open("experiments.json", "w") as out:
        json.dump(found, out)
'''


def request_of(project, experiment: str, run: str) -> dict:
    return json.loads((project.artifacts / experiment / run / "attempt-0001" / "request.json"
                       ).read_text())


def run_spec(experiment: str, run_id: str = "", **hyperparameters) -> RunSpec:
    return RunSpec(experiment=experiment, run_id=run_id, path=None, line=1, description="",
                   source_dir=None, entry_point="train.py", hyperparameters=hyperparameters,
                   swept=dict(hyperparameters), inputs={}, metric_definitions=(), expect=(),
                   marks=(), max_run=60)


def search_spec(experiment: str, max_jobs: int) -> RunSpec:
    """A `tune:` item of `max_jobs` Random trials of `lr`."""
    from sm_pytest.spec.tuning import TuneSpec

    tune = TuneSpec(strategy="Random", objective_metric="accuracy", objective_type="Maximize",
                    max_jobs=max_jobs, max_parallel_jobs=1, ranges=())
    return dataclasses.replace(run_spec(experiment, epochs=1), tune=tune)


def result_of(job: str, tmp_path, status=COMPLETED, reason="", **series) -> RunResult:
    return RunResult(status=status, artifact_dir=tmp_path, log_path=tmp_path,
                     model_dir=tmp_path, job_name=job, failure_reason=reason,
                     metric_series=series)


# The notices of trackers made without a list of their own: none is expected (finish_run
# turns a failed Experiments call into a notice, so a test would not see it otherwise).
_UNEXPECTED_NOTICES: list[str] = []


@pytest.fixture
def emulated():
    import boto3

    from sm_pytest.sagemaker.emulator.service import Emulator

    _UNEXPECTED_NOTICES.clear()
    with Emulator(region="us-east-1") as emu:
        yield emu, boto3.Session(region_name="us-east-1")
    assert emu.refused == [], emu.refused  # no request of ours that AWS would refuse
    assert _UNEXPECTED_NOTICES == []


def tracker_of(session, notices: list | None = None):
    from sm_pytest.sagemaker.experiments import SageMakerExperiments

    return SageMakerExperiments(session, notice=(
        notices if notices is not None else _UNEXPECTED_NOTICES).append)


def earlier_runs(emu, experiment: str, count: int) -> None:
    from sm_pytest.sagemaker.emulator.trial_components import record_earlier_runs

    record_earlier_runs(emu.account_id, emu.region, experiment, count)


# --- the whole path, as a user runs it -------------------------------------------------------


def test_long_underscored_file_name_sweep_passes_with_traceable_names_and_statuses(project):
    assert len(LONG_NAME) == 60
    project.experiment(LONG_NAME, """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.95]}
        expect: {accuracy: ">= 0.9"}
    """)
    project.experiment("broken", """
        base: config/base.yaml
        hyperparameters: {crash: "ValueError: loss is NaN"}
        expect: {accuracy: ">= 0.9"}
    """)
    project.pytester.makeconftest(DUMP_EXPERIMENTS)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=2, errors=1)
    experiment = names.experiment_name(LONG_NAME)
    # Cut, with a hash, to leave room for `--999` within the SDK's 59 characters.
    assert experiment.startswith("learning-rate-sweep-for-the-mnist-cnn-regressio-")
    assert len(experiment) == 54
    found = json.loads((project.root / "experiments.json").read_text())
    for accuracy in ("0.91", "0.95"):
        sent = request_of(project, LONG_NAME, f"accuracy={accuracy}")
        job = sent["TrainingJobName"]
        # Traceable: the experiment's head, the whole run id, then hash and token.
        assert job.startswith("learning-rate-sweep-for-the") and len(job) <= 59
        assert f"-accuracy-{accuracy.replace('.', 'p')}-" in job
        config = sent["ExperimentConfig"]
        assert config == {"ExperimentName": experiment,
                          "TrialName": names.run_group(experiment),
                          "RunName": names.trial_component_name(experiment, job)}
        run = found[config["RunName"]]
        assert run["status"]["PrimaryStatus"] == "Completed"
        shown = f"{LONG_NAME.replace('_', '-')}--accuracy-{accuracy.replace('.', 'p')}"
        assert run["display"] == shown  # the whole item id, in a form AWS accepts
        assert run["trials"] == [config["TrialName"]]
        own = found[names.job_component_name(job)]  # SageMaker's own, in the same trial
        assert own["source"]["SourceType"] == "SageMakerTrainingJob"
        assert own["source"]["SourceArn"].endswith(f":training-job/{job}")
        assert own["trials"] == [config["TrialName"]]
    failed = found[request_of(project, "broken", "default")["ExperimentConfig"]["RunName"]]
    assert failed["status"]["PrimaryStatus"] == "Failed"  # not the SDK's Completed
    assert "ValueError: loss is NaN" in failed["status"]["Message"]
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert summary["job"].str.startswith("learning-rate-sweep-for-the").sum() == 2


def test_under_xdist_one_plan_puts_the_whole_sweep_in_one_experiment(project, monkeypatch):
    pytest.importorskip("xdist")
    # An earlier session left 30 runs in `sweep` (each with its job's own component): 30
    # more do not fit in 50, so the whole sweep goes to `sweep--2`, planned once for both
    # workers, with no run landing in `sweep` and none refused.
    monkeypatch.setenv("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep=30")
    seeds = ", ".join(str(seed) for seed in range(30))
    project.experiment("sweep", f"""
        base: config/base.yaml
        hyperparameters: {{epochs: 1}}
        matrix: {{seed: [{seeds}]}}
        expect: {{accuracy: ">= 0.9"}}
    """)
    result = project.run_subprocess(*SM, "-n", "2")
    result.assert_outcomes(passed=30)
    experiments = {request_of(project, "sweep", f"seed={seed}")["ExperimentConfig"][
        "ExperimentName"] for seed in range(30)}
    assert experiments == {"sweep--2"}
    plans = json.loads((project.artifacts / "experiments-plan.json").read_text())
    assert len(plans) == 1  # one test run, one plan
    (plan,) = plans.values()
    assert plan["rollover"] == {"sweep": 2} and plan["planned"] == {"sweep": 30}


def test_a_run_whose_request_cannot_be_built_leaves_no_run_in_progress(project):
    # The request is refused before launch (a script-mode hyperparameter); a Run made first
    # would stay InProgress for ever, counting against the quota.
    project.experiment("clash", """
        base: config/base.yaml
        hyperparameters: {sagemaker_program: other.py}
        expect: {accuracy: ">= 0.9"}
    """)
    project.experiment("fine", """
        base: config/base.yaml
        expect: {accuracy: ">= 0.9"}
    """)
    project.pytester.makeconftest(DUMP_EXPERIMENTS)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*sagemaker_program are set by sm-pytest itself*"])
    found = json.loads((project.root / "experiments.json").read_text())
    statuses = {name: run["status"].get("PrimaryStatus") for name, run in found.items()
                if not run["source"]}
    assert list(statuses.values()) == ["Completed"], statuses


def test_two_workers_planning_at_different_times_share_one_experiment(emulated, tmp_path):
    """pytest-xdist's race: worker B plans after worker A has launched some runs. With the
    plan file B follows A's plan; on its own B would count A's runs and split the sweep."""
    from sm_pytest.backends.sagemaker_session import SageMakerSession

    emu, boto = emulated
    earlier_runs(emu, "sweep", 20)
    runs = [run_spec("sweep", f"seed={i}", seed=i) for i in range(30)]

    notices = []

    def worker(plan_file):
        worker = SageMakerSession(cli={}, ini={}, config_path=None, token="abc", emit=print,
                                  plan_file=plan_file, plan_key="run-1")
        worker.experiments = tracker_of(boto, notices)
        return worker

    def land(plan_file) -> set[str]:
        a, b = worker(plan_file), worker(plan_file)
        a._plan(runs)  # 20 + 30 fit in 50: `sweep`
        configs = [a.experiments.start_run(run, f"sweep-seed-{run.swept['seed']}-"
                                            f"{plan_file is None:d}a{i:03d}")
                   for i, run in enumerate(runs[:15])]
        b._plan(runs)  # now `sweep` holds 35 runs
        configs += [b.experiments.start_run(run, f"sweep-seed-{run.swept['seed']}-"
                                             f"{plan_file is None:d}b{i:03d}")
                    for i, run in enumerate(runs[15:])]
        return {config["ExperimentName"] for config in configs}

    assert land(tmp_path / "experiments-plan.json") == {"sweep"} and notices == []
    # The same race without the plan file, on another experiment in the same state: B finds
    # 35 runs in `other`, no room for 30 more, and sends its share to `other--2`.
    earlier_runs(emu, "other", 20)
    runs = [run_spec("other", f"seed={i}", seed=i) for i in range(30)]
    assert land(None) == {"other", "other--2"}
    assert notices == ["SageMaker experiment 'other' holds 35 of 50 runs; this session's 30"
                       " go to 'other--2'"]


def test_the_readme_lists_every_action_a_tracked_run_calls(emulated, tmp_path):
    import re
    from pathlib import Path

    emu, session = emulated
    tracker = tracker_of(session)
    run = run_spec("lr_sweep", "lr=0.1", lr=0.1)
    tracker.plan([run])
    tracker.start_run(run, "lr-sweep-lr-0p1-abc123000")
    tracker.finish_run(run, result_of("lr-sweep-lr-0p1-abc123000", tmp_path, loss=[0.5]))
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| SageMaker, Experiments")]
    every_run = {m.group(1) for m in re.finditer(r"`(?:sagemaker:)?(\w+)`( \([^)]*\))?", row)
                 if "--sm-history" not in (m.group(2) or "") or "every run" in m.group(2)}
    called = set(emu.calls)
    assert "Search" in called  # the SDK's Run and load_run search, on every run
    assert called <= every_run, called - every_run


@pytest.mark.parametrize("variable, value, said", [
    ("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep=lots",
     "SM_PYTEST_EMULATE_EXPERIMENT_RUNS='sweep=lots': 'lots' is not a whole number of at"
     " least 0; the variable takes <SageMaker experiment>=<runs>[,...], e.g. lr-sweep=30"),
    ("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "=3", "*'=3' names no experiment*"),
    ("SM_PYTEST_EMULATE_LOG_PAGES", "two",
     "SM_PYTEST_EMULATE_LOG_PAGES='two': 'two' is not a whole number of at least 1; the"
     " variable takes <page size>,<empty pages>, e.g. 2,3"),
    ("SM_PYTEST_EMULATE_THROTTLE", "-1", "*SM_PYTEST_EMULATE_THROTTLE='-1': '-1' is not*"),
])
def test_a_bad_emulator_knob_is_named_and_nothing_runs(project, monkeypatch, variable, value,
                                                       said):
    monkeypatch.setenv(variable, value)
    project.experiment("sweep", """
        base: config/base.yaml
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: nothing was launched: {said}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (project.artifacts / "sweep").exists()


# --- the quota ---------------------------------------------------------------------------------


def test_quota_counts_runs_not_the_components_sagemaker_made_itself(emulated):
    emu, session = emulated
    earlier_runs(emu, "sweep", 30)  # 30 runs + their 30 jobs' own components
    listed = session.client("sagemaker").list_trial_components(
        TrialName=names.run_group("sweep"))["TrialComponentSummaries"]
    assert len(listed) == 60
    assert sum("TrialComponentSource" in s for s in listed) == 30
    notices = []
    fits = tracker_of(session, notices)
    fits.plan([run_spec("sweep", f"seed={i}", seed=i) for i in range(20)])
    assert fits.names == {"sweep": "sweep"} and notices == []
    over = tracker_of(session, notices)
    over.plan([run_spec("sweep", f"seed={i}", seed=i) for i in range(21)])
    assert over.names == {"sweep": "sweep--2"}
    assert notices == ["SageMaker experiment 'sweep' holds 30 of 50 runs; this session's 21 go"
                       " to 'sweep--2'"]


def test_emulator_refuses_a_51st_run_in_one_run_group(emulated):
    from botocore.exceptions import ClientError

    emu, session = emulated
    earlier_runs(emu, "full", 50)
    client = session.client("sagemaker")
    client.create_trial_component(TrialComponentName="one-more")
    with pytest.raises(ClientError) as refused:
        client.associate_trial_component(TrialComponentName="one-more",
                                         TrialName=names.run_group("full"))
    assert refused.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert ("'Total number of trial components allowed in a single trial, excluding those"
            " automatically created by SageMaker' is 50 Trial Components, with current"
            " utilization of 50 Trial Components") in str(refused.value)


def test_a_group_filled_after_planning_rolls_over_at_launch(emulated):
    emu, session = emulated
    earlier_runs(emu, "sweep", 47)
    notices = []
    tracker = tracker_of(session, notices)
    runs = [run_spec("sweep", f"seed={i}", seed=i) for i in range(3)]
    tracker.plan(runs)
    assert tracker.names == {"sweep": "sweep"}
    first = tracker.start_run(runs[0], "sweep-seed-0-abc123000")
    assert first["ExperimentName"] == "sweep"
    # Another session takes the last two places before our next launch.
    client = session.client("sagemaker")
    for name in ("other-1", "other-2"):
        client.create_trial_component(TrialComponentName=name)
        client.associate_trial_component(TrialComponentName=name,
                                         TrialName=names.run_group("sweep"))
    second = tracker.start_run(runs[1], "sweep-seed-1-abc123001")
    assert second["ExperimentName"] == "sweep--2"
    assert notices == ["SageMaker experiment 'sweep' filled up after this session planned it;"
                       " its 2 run(s) still to launch go to 'sweep--2'"]
    # The count said there was room, but the last place went meanwhile: still no failure.
    earlier_runs(emu, "sweep--2", 49)
    real = tracker.count_components
    tracker.count_components = lambda name: 0 if name == "sweep--2" else real(name)
    third = tracker.start_run(runs[2], "sweep-seed-2-abc123002")
    assert third["ExperimentName"] == "sweep--3"


def test_more_than_fifty_runs_of_one_file_is_refused_before_launch(emulated):
    from sm_pytest.sagemaker.experiments import ExperimentLimitError

    _, session = emulated
    with pytest.raises(ExperimentLimitError, match="'sweep' has 51 runs in this session"):
        tracker_of(session).plan([run_spec("sweep", f"seed={i}", seed=i) for i in range(51)])


def test_a_search_is_planned_as_its_max_jobs_runs(emulated):
    emu, session = emulated
    earlier_runs(emu, "search", 10)
    notices = []
    fits = tracker_of(session, notices)
    fits.plan([search_spec("search", 40)])  # 10 + 40 fit in 50
    assert fits.names == {"search": "search"} and fits.planned == {"search": 40}
    over = tracker_of(session, notices)
    over.plan([search_spec("search", 40), run_spec("search", "seed=1", seed=1)])
    assert over.names == {"search": "search--2"} and over.planned == {"search": 41}
    assert notices == ["SageMaker experiment 'search' holds 10 of 50 runs; this session's 41"
                       " go to 'search--2'"]


def test_a_search_larger_than_a_run_group_rolls_over_as_its_trials_are_recorded(emulated,
                                                                                tmp_path):
    # 60 trials cannot be kept in one run group, and unlike a matrix they cannot be split over
    # files or selected with -k: the search runs, and its trials after the 50th roll over.
    emu, session = emulated
    notices = []
    tracker = tracker_of(session, notices)
    search = search_spec("big", 60)
    tracker.plan([search])
    assert tracker.names == {"big": "big"} and tracker.planned == {"big": 60}
    assert notices == ["SageMaker experiment 'big': this session may record 60 runs (60 of them"
                       " trials, the max_jobs of its searches), more than the 50 of one run"
                       " group; the runs after the 50th go to the next rolled-over experiment"]
    earlier_runs(emu, "big", 48)  # as if 48 trials were recorded already
    shown = []
    for number in (1, 2, 3):
        trial = search.trial(number, {"lr": 0.1 * number})
        job = f"big-abc123000-{number:03d}-0123abcd"
        tracker.record_trial(trial, result_of(job, tmp_path, accuracy=[0.9, 0.9 + number / 100]))
        shown.append(session.client("sagemaker").describe_trial_component(
            TrialComponentName=names.trial_component_name(
                "big" if number < 3 else "big--2", job)))
    assert notices[1:] == ["SageMaker experiment 'big' filled up after this session planned"
                           " it; its 50 run(s) still to launch go to 'big--2'"]
    assert [run["Parameters"]["lr"]["NumberValue"] for run in shown] == pytest.approx(
        [0.1, 0.2, 0.3])
    assert [run["Metrics"][0]["Last"] for run in shown] == pytest.approx([0.91, 0.92, 0.93])
    assert {run["Status"]["PrimaryStatus"] for run in shown} == {"Completed"}


def test_a_trial_whose_job_left_no_component_is_still_a_run(emulated, tmp_path):
    _, session = emulated
    tracker = tracker_of(session)
    search = search_spec("lone", 2)
    tracker.plan([search])
    job = "lone-abc123000-001-0123abcd"  # no such job: the service made no component
    tracker.record_trial(search.trial(1, {"lr": 0.5}), result_of(
        job, tmp_path, status=FAILED, reason="AlgorithmError: boom"))
    run = session.client("sagemaker").describe_trial_component(
        TrialComponentName=names.trial_component_name("lone", job))
    assert run["Status"] == {"PrimaryStatus": "Failed", "Message": "AlgorithmError: boom"}
    assert run["Parameters"]["lr"]["NumberValue"] == 0.5


def test_a_trial_that_cannot_be_recorded_is_a_notice_not_a_lost_trial(emulated, tmp_path):
    emu, session = emulated
    emu.throttle("CreateTrialComponent", code="AccessDeniedException",
                 message="User: arn:aws:iam::123456789012:user/ci is not authorized")
    notices = []
    tracker = tracker_of(session, notices)
    search = search_spec("denied", 2)
    tracker.plan([search])
    tracker.record_trial(search.trial(1, {"lr": 0.5}),
                         result_of("denied-abc123000-001-0123abcd", tmp_path))
    (notice,) = notices
    assert notice.startswith("could not record denied trial 1 in SageMaker Experiments:")
    assert "AccessDeniedException" in notice and "is not authorized" in notice


def test_a_shared_plan_is_followed_not_made_again(emulated, tmp_path):
    from sm_pytest.backends.sagemaker_session import _shared_plan

    _, session = emulated
    plan_file = tmp_path / "experiments-plan.json"
    runs = [run_spec("sweep", f"seed={i}", seed=i) for i in range(3)]
    made = []

    def plan_with(tracker):
        return lambda: made.append(1) or {"rollover": tracker.plan(runs),
                                          "planned": tracker.planned}

    first = _shared_plan(plan_file, "run-1", plan_with(tracker_of(session)))
    # The other worker would have planned the same; it follows the first worker's plan.
    follower = tracker_of(session)
    second = _shared_plan(plan_file, "run-1", plan_with(follower))
    assert made == [1] and first == second and first["rollover"] == {"sweep": 1}
    follower.adopt(second["rollover"], second["planned"])
    assert follower.names == {"sweep": "sweep"} and follower.planned == {"sweep": 3}
    _shared_plan(plan_file, "run-2", plan_with(tracker_of(session)))  # another test run
    assert made == [1, 1] and set(json.loads(plan_file.read_text())) == {"run-1", "run-2"}


# --- run status ----------------------------------------------------------------------------------


def test_run_status_follows_the_job(emulated, tmp_path):
    _, session = emulated
    tracker = tracker_of(session)
    client = session.client("sagemaker")
    runs = {status: run_spec("status", f"case={status}", case=status)
            for status in (COMPLETED, FAILED, "stopped", "timed_out")}
    tracker.plan(runs.values())
    shown = {}
    for status, run in runs.items():
        job = f"status-case-{status.replace('_', '-')}-abc123000"
        config = tracker.start_run(run, job)
        during = client.describe_trial_component(TrialComponentName=config["RunName"])
        assert during["Status"]["PrimaryStatus"] == "InProgress"  # while the job runs
        tracker.finish_run(run, result_of(job, tmp_path, status=status,
                                          reason="AlgorithmError: boom\nexit code: 1"
                                          if status != COMPLETED else "", loss=[0.5, 0.2]))
        detail = client.describe_trial_component(TrialComponentName=config["RunName"])
        shown[status] = detail["Status"]
        assert detail["Metrics"][0]["Last"] == 0.2
    assert shown[COMPLETED] == {"PrimaryStatus": "Completed", "Message": ""}
    assert shown[FAILED] == {"PrimaryStatus": "Failed",
                             "Message": "AlgorithmError: boom exit code: 1"}
    assert shown["stopped"]["PrimaryStatus"] == shown["timed_out"]["PrimaryStatus"] == "Stopped"


# --- --sm-history ---------------------------------------------------------------------------------


def test_history_covers_the_rolled_over_experiments(emulated, tmp_path):
    from sm_pytest.sagemaker.experiments import history_frame

    emu, session = emulated
    earlier_runs(emu, "lr-sweep", 1)  # a run of an earlier session, and its job's component
    tracker = tracker_of(session)
    first, second = run_spec("lr_sweep", "lr=0.1", lr=0.1), run_spec("lr_sweep", "lr=1.0", lr=1.0)
    tracker.plan([first])
    tracker.start_run(first, "lr-sweep-lr-0-1-abc123000")
    tracker.finish_run(first, result_of("lr-sweep-lr-0-1-abc123000", tmp_path,
                                        test_accuracy=[0.9, 0.95]))
    tracker.rollover["lr_sweep"] = 2  # as a later session that found `lr-sweep` full
    tracker.start_run(second, "lr-sweep-lr-1-0-abc124000")
    tracker.finish_run(second, result_of("lr-sweep-lr-1-0-abc124000", tmp_path,
                                         test_accuracy=[0.9, 0.97]))
    frame = history_frame(session, "lr_sweep")
    assert list(frame.columns[:3]) == ["run", "trial_component", "experiment"]
    assert sorted(frame["experiment"]) == ["lr-sweep", "lr-sweep", "lr-sweep--2"]
    assert not frame["trial_component"].str.endswith("-aws-training-job").any()
    ours = frame.dropna(subset=["lr"]).sort_values("lr")
    assert list(ours["experiment"]) == ["lr-sweep", "lr-sweep--2"]
    assert list(ours["test_accuracy"]) == [0.95, 0.97]
    assert list(ours["run"]) == ["lr-sweep--lr-0p1", "lr-sweep--lr-1p0"]


@pytest.mark.parametrize("code, message", [
    ("AccessDeniedException", "User: arn:aws:iam::123456789012:user/ci is not authorized to"
                              " perform: sagemaker:ListTrialComponents"),
    ("ExpiredTokenException", "The security token included in the request is expired"),
])
def test_history_errors_are_errors_not_an_empty_history(emulated, code, message):
    from sm_pytest.sagemaker.experiments import HistoryError, history_frame

    emu, session = emulated
    emu.throttle("ListTrialComponents", code=code, message=message)
    with pytest.raises(HistoryError) as error:
        history_frame(session, "lr_sweep")
    assert str(error.value).startswith(
        "could not read the SageMaker Experiments history of 'lr-sweep': ClientError:")
    assert code in str(error.value) and message in str(error.value)


def test_history_without_credentials_is_a_usage_error(project, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = project.run_subprocess("--sm-history", "lr_sweep", "--sm-region", "us-east-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: could not read the SageMaker Experiments history of"
                                 " 'lr-sweep': NoCredentialsError: Unable to locate credentials"])
    assert "no runs recorded" not in result.stdout.str()


def test_history_of_an_unknown_experiment_says_so(project):
    project.pytester.makeconftest(textwrap.dedent('''
        import pytest
        from sm_pytest.sagemaker.emulator.service import Emulator

        @pytest.hookimpl(wrapper=True)
        def pytest_cmdline_main(config):
            with Emulator(region="us-east-1"):
                return (yield)
    '''))
    result = project.run_subprocess("--sm-history", "never_ran", "--sm-region", "us-east-1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["no runs recorded for 'never-ran'"])
