"""Hyperparameter tuning jobs: the request sm-pytest sends (sagemaker/tuning.py), and the
emulator running it with real trials (sagemaker/emulator/tuning.py), through boto3."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402

from sm_pytest.sagemaker import names  # noqa: E402
from sm_pytest.sagemaker import request as rq  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402
from sm_pytest.sagemaker.settings import SageMakerSettings  # noqa: E402
from sm_pytest.sagemaker.tuning import (  # noqa: E402
    list_trials,
    trial_number,
    tuning_outcome,
    tuning_request,
)
from sm_pytest.spec.experiment_file import RunSpec  # noqa: E402
from sm_pytest.spec.metrics import MetricDefinition  # noqa: E402
from sm_pytest.spec.tuning import CATEGORICAL, CONTINUOUS, INTEGER, Range, TuneSpec  # noqa: E402

BUCKET = "sm-tuning-tests"
ROLE = "arn:aws:iam::123456789012:role/sm-tuning-tests"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
SOURCE = f"s3://{BUCKET}/code/sourcedir.tar.gz"
DATA = f"s3://{BUCKET}/data/training/"
TERMINAL = ("Completed", "Failed", "Stopped")

# A stand-in for a training script: its accuracy peaks at lr=0.3, it crashes with the
# optimizer "adam", and it writes when it ran into --intervals (to count what overlapped).
TUNED_TRAIN = '''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--optimizer", default="sgd")
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--intervals", default="")
args, _ = p.parse_known_args()
started = time.time()
print(f"args lr={args.lr!r} batch={args.batch_size!r} optimizer={args.optimizer!r}", flush=True)
with open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")) as f:
    objective = json.load(f).get("_tuning_objective_metric", '"none"')
try:  # decoded as the training toolkit decodes each value
    objective = json.loads(objective)
except ValueError:
    pass
print(f"objective_param={objective}", flush=True)
if args.optimizer == "adam":
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write("RuntimeError: adam diverged")
    sys.exit(1)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    accuracy = 1.0 - abs(args.lr - 0.3) - 0.0001 * args.batch_size
    print(f"epoch={epoch} loss={abs(args.lr - 0.3):.6f} accuracy={accuracy:.6f}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write(f"lr={args.lr}")
if args.intervals:
    name = os.environ["TRAINING_JOB_NAME"]
    with open(os.path.join(args.intervals, name), "w") as f:
        json.dump([started, time.time()], f)
'''

METRICS = (MetricDefinition("accuracy", r"accuracy=([0-9.]+)"),
           MetricDefinition("loss", r"loss=([0-9.]+)"))


@pytest.fixture
def emu(tmp_path):
    with Emulator(stop_grace_seconds=0.5, log_flush_seconds=0.1, workdir=tmp_path) as emulator:
        s3 = emulator.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(TUNED_TRAIN)
        emulator.upload_source(source, SOURCE)
        s3.put_object(Bucket=BUCKET, Key="data/training/sample.txt", Body=b"mnist-ish")
        yield emulator


def make_run(**hyperparameters) -> RunSpec:
    return RunSpec(
        experiment="lr_search", run_id="", path=Path("experiments/lr_search.yaml"), line=1,
        description="", source_dir=Path("src"), entry_point="train.py",
        hyperparameters={"epochs": 2, "lr": 0.1, "batch-size": 64, **hyperparameters},
        swept={}, inputs={"training": "data/mnist-sample"}, metric_definitions=METRICS,
        expect=(), marks=(), max_run=900)


def make_tune(strategy="Random", ranges=None, **changes) -> TuneSpec:
    fields = dict(
        strategy=strategy, objective_metric="accuracy", objective_type="Maximize",
        max_jobs=4, max_parallel_jobs=2, random_seed=7,
        ranges=ranges or (Range("lr", CONTINUOUS, min=0.01, max=2.0, scaling="Logarithmic"),
                          Range("batch-size", INTEGER, min=16, max=128)))
    fields.update(changes)
    return TuneSpec(**fields)


def training_request(run: RunSpec | None = None, **settings_changes) -> dict:
    settings = SageMakerSettings(role=ROLE, region="us-east-1", bucket=BUCKET,
                                 tags={"project": "sm-pytest"}, max_run=600,
                                 **settings_changes)
    request, _ = rq.build_request(run or make_run(), settings,
                                  job_name="lr-search-abc123000", image_uri=IMAGE,
                                  source_uri=SOURCE, inputs={"training": DATA},
                                  experiment_config={"ExperimentName": "lr-search",
                                                     "TrialName": "Default-Run-Group-lr-search"})
    return request


def wait_for(sm, name: str, timeout: float = 60.0, until=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        desc = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if desc["HyperParameterTuningJobStatus"] in until or time.monotonic() > deadline:
            return desc
        time.sleep(0.05)


def launch(emu, tune: TuneSpec, name: str, run: RunSpec | None = None) -> dict:
    request = tuning_request(tune, training_request(run), name)
    emu.client("sagemaker").create_hyper_parameter_tuning_job(**request)
    return request


def refusal(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


# --- the request --------------------------------------------------------------------------


def test_the_trials_definition_leaves_the_warm_pool_out(emu):
    """The service keeps no warm pool for a trial (it sets KeepAlivePeriodInSeconds to
    nil): the definition leaves it out, and the emulated service drops it from a request
    that has it, so its trials never keep one."""
    training = training_request(keep_alive_s=600)
    assert training["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    request = tuning_request(make_tune(), training, "pool-1")
    assert "KeepAlivePeriodInSeconds" not in request["TrainingJobDefinition"]["ResourceConfig"]
    request["TrainingJobDefinition"]["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 600
    emu.quota("ml.m5.xlarge", 4)
    emu.client("sagemaker").create_hyper_parameter_tuning_job(**request)
    assert wait_for(emu.client("sagemaker"), "pool-1")["HyperParameterTuningJobStatus"] == (
        "Completed")
    trials = [r for r in emu.requests if r["TrainingJobName"].startswith("pool-1-")]
    assert trials and all("KeepAlivePeriodInSeconds" not in r["ResourceConfig"] for r in trials)
    assert emu.warm_pools == []


def test_the_request_carries_the_training_job_definition_and_the_ranges_as_strings():
    tune = make_tune(strategy="Bayesian", early_stopping="Auto", ranges=(
        Range("lr", CONTINUOUS, min=0.01, max=2.0, scaling="Logarithmic"),
        Range("batch-size", INTEGER, min=16, max=128),
        Range("optimizer", CATEGORICAL, values=("sgd", "adam")),
        Range("width", CATEGORICAL, values=(32, 64, 1.5, True))))
    training = training_request(spot=True)
    request = tuning_request(tune, training, "lr-search-abc123000")

    assert request["HyperParameterTuningJobName"] == "lr-search-abc123000"
    config = request["HyperParameterTuningJobConfig"]
    assert config == {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "accuracy"},
        "ResourceLimits": {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4},
        "ParameterRanges": {
            "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.01", "MaxValue": "2.0",
                                           "ScalingType": "Logarithmic"}],
            "IntegerParameterRanges": [{"Name": "batch-size", "MinValue": "16",
                                        "MaxValue": "128", "ScalingType": "Auto"}],
            # JSON-encoded, as the SDK encodes them for a framework estimator: the script
            # gets each value with its YAML type, like the static hyperparameters.
            "CategoricalParameterRanges": [
                {"Name": "optimizer", "Values": ['"sgd"', '"adam"']},
                {"Name": "width", "Values": ["32", "64", "1.5", "true"]}],
        },
        "TrainingJobEarlyStoppingType": "Auto",
        "RandomSeed": 7,
    }
    definition = request["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert "lr" not in static and "batch-size" not in static  # the tuned names are not static
    assert static["epochs"] == "2"
    assert static["sagemaker_program"] == '"train.py"'
    assert static["sagemaker_submit_directory"] == json.dumps(SOURCE)
    assert static["sagemaker_job_name"] == '"lr-search-abc123000"'  # the tuning job's name
    for key in ("AlgorithmSpecification", "RoleArn", "InputDataConfig", "OutputDataConfig",
                "ResourceConfig", "StoppingCondition", "CheckpointConfig"):
        assert definition[key] == training[key], key
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "accuracy", "Regex": "accuracy=([0-9.]+)"},
        {"Name": "loss", "Regex": "loss=([0-9.]+)"}]
    # No ExperimentConfig in a training job definition; the tags go on the tuning job.
    assert "ExperimentConfig" not in definition and "Tags" not in definition
    assert "TrainingJobName" not in definition and "HyperParameters" not in definition
    assert request["Tags"] == training["Tags"]
    assert {"Key": "project", "Value": "sm-pytest"} in request["Tags"]


def test_grid_and_hyperband_requests():
    grid = make_tune(strategy="Grid", max_jobs=6, random_seed=None, ranges=(
        Range("optimizer", CATEGORICAL, values=("sgd", "adam")),
        Range("batch-size", CATEGORICAL, values=(32, 64, 128))))
    config = tuning_request(grid, training_request(), "g-1")["HyperParameterTuningJobConfig"]
    # The service runs every combination of a grid: no MaxNumberOfTrainingJobs.
    assert config["ResourceLimits"] == {"MaxParallelTrainingJobs": 2}
    assert "RandomSeed" not in config
    assert list(config["ParameterRanges"]) == ["CategoricalParameterRanges"]

    hyperband = make_tune(strategy="Hyperband", early_stopping="Off")
    config = tuning_request(hyperband, training_request(), "h-1")[
        "HyperParameterTuningJobConfig"]
    assert config["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 2}}  # the static epochs


def test_requests_that_cannot_be_expressed_are_refused_with_the_reason():
    with pytest.raises(rq.RequestError, match="'test_accuracy' has no metric definition;"
                                              " defined: accuracy, loss"):
        tuning_request(make_tune(objective_metric="test_accuracy"), training_request(), "t-1")
    with pytest.raises(rq.RequestError, match="'lr' is continuous; a Grid search takes"
                                              " categorical ranges only"):
        tuning_request(make_tune(strategy="Grid"), training_request(), "t-1")
    epochs_tuned = make_tune(strategy="Hyperband", ranges=(Range("epochs", INTEGER, min=1,
                                                                 max=5),))
    with pytest.raises(rq.RequestError, match="Hyperband needs the number of epochs"):
        tuning_request(epochs_tuned, training_request(), "t-1")
    with pytest.raises(rq.RequestError, match="not a valid SageMaker tuning job name"):
        tuning_request(make_tune(), training_request(), "x" * 33)


def test_tuning_job_names_fit_32_characters_and_are_unique_per_launch():
    short = make_run()
    assert names.tuning_job_name(short, "3fa2c1004") == "lr-search-3fa2c1004"
    long = RunSpec(**{**short.__dict__, "experiment": "learning_rate_search_for_the_mnist_cnn",
                      "run_id": "optimizer=adam,width=64"})
    made = {names.tuning_job_name(run, token) for run in (short, long)
            for token in ("3fa2c1000", "3fa2c1001", "9b0e44000")}
    assert len(made) == 6
    for name in made:
        assert len(name) <= 32 and names.TUNING_JOB_NAME_PATTERN.fullmatch(name), name
        # The service names trials <name>-NNN-<8 hex>: still a valid training job name.
        assert names.JOB_NAME_PATTERN.fullmatch(f"{name}-012-0123abcd")
    cut = names.tuning_job_name(long, "3fa2c1000")
    assert cut.endswith("-3fa2c1000") and cut.startswith("learning")
    assert cut == names.tuning_job_name(long, "3fa2c1000")  # the same inputs, the same name
    with pytest.raises(ValueError, match="longer than 16"):
        names.tuning_job_name(short, "z" * 17)


def test_tuning_outcome_reads_the_counters_the_best_job_and_the_trials():
    describe = {
        "HyperParameterTuningJobName": "t-1", "HyperParameterTuningJobStatus": "InProgress",
        "HyperParameterTuningJobConfig": {"HyperParameterTuningJobObjective": {
            "Type": "Maximize", "MetricName": "accuracy"}},
        "TrainingJobStatusCounters": {"Completed": 2, "InProgress": 1, "RetryableError": 1,
                                      "NonRetryableError": 2, "Stopped": 1},
        "BestTrainingJob": {"TrainingJobName": "t-1-002-0123abcd",
                            "FinalHyperParameterTuningJobObjectiveMetric": {
                                "MetricName": "accuracy", "Value": 0.97}},
    }
    trials = [
        {"TrainingJobName": "t-1-002-0123abcd", "TrainingJobStatus": "Completed",
         "TunedHyperParameters": {"lr": "0.3", "optimizer": '"sgd"'},
         "ObjectiveStatus": "Succeeded",
         "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "accuracy",
                                                         "Value": 0.97}},
        {"TrainingJobName": "t-1-001-89abcdef", "TrainingJobStatus": "Failed",
         "TunedHyperParameters": {"lr": "1.5", "optimizer": '"adam"'},
         "ObjectiveStatus": "Failed", "FailureReason": "AlgorithmError: diverged"},
    ]
    outcome = tuning_outcome(describe, trials)
    assert (outcome.completed, outcome.running, outcome.stopped, outcome.failed) == (2, 1, 1, 3)
    assert (outcome.best_job, outcome.best_value, outcome.metric) == (
        "t-1-002-0123abcd", 0.97, "accuracy")
    assert not outcome.finished
    assert [t.number for t in outcome.trials] == [1, 2]
    assert outcome.trials[0].values == {"lr": 1.5, "optimizer": "adam"}  # as the script reads
    assert outcome.trials[0].objective is None and outcome.trials[1].objective == 0.97
    assert outcome.progress() == ("2 completed, 1 running, 1 stopped, 3 failed;"
                                  " best accuracy 0.97 (t-1-002-0123abcd)")
    assert trial_number("lr-search-3fa2c1004-017-0a1b2c3d") == 17
    assert trial_number("lr-search-3fa2c1004") is None


# --- the emulated tuning job --------------------------------------------------------------


def test_trials_really_run_at_most_max_parallel_at_a_time_and_the_best_is_chosen(emu, tmp_path):
    intervals = tmp_path / "intervals"
    intervals.mkdir()
    run = make_run(sleep=0.3, intervals=str(intervals))
    launch(emu, make_tune(max_jobs=5, max_parallel_jobs=2), "lr-search-t1", run)
    sm = emu.client("sagemaker")
    desc = wait_for(sm, "lr-search-t1")

    assert desc["HyperParameterTuningJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["TrainingJobStatusCounters"] == {"Completed": 5, "InProgress": 0,
                                                 "RetryableError": 0, "NonRetryableError": 0,
                                                 "Stopped": 0}
    assert desc["ObjectiveStatusCounters"] == {"Succeeded": 5, "Pending": 0, "Failed": 0}
    assert "HyperParameterTuningEndTime" in desc

    trials = list_trials(sm, "lr-search-t1")
    assert len(trials) == 5
    assert [trial_number(t["TrainingJobName"]) for t in trials] == [1, 2, 3, 4, 5]
    s3 = emu.client("s3")
    for trial in trials:
        name = trial["TrainingJobName"]
        job = sm.describe_training_job(TrainingJobName=name)
        assert job["TrainingJobStatus"] == "Completed"
        assert job["TuningJobArn"] == desc["HyperParameterTuningJobArn"]
        hps = job["HyperParameters"]
        assert hps["_tuning_objective_metric"] == "accuracy"  # as the service sets it
        assert hps["lr"] == trial["TunedHyperParameters"]["lr"]
        assert 0.01 <= float(hps["lr"]) <= 2.0 and 16 <= int(hps["batch-size"]) <= 128
        assert hps["epochs"] == "2" and hps["sagemaker_program"] == '"train.py"'
        assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])[
            "Tags"]}["project"] == "sm-pytest"  # the tuning job's tags, passed on
        # A real job: its script ran with the values, logged, reported metrics, saved a model.
        lines = [line for stream in emu.log_events(name).values() for line in stream]
        assert f"args lr={float(hps['lr'])!r} batch={int(hps['batch-size'])!r}" \
               " optimizer='sgd'" in lines
        assert "objective_param=accuracy" in lines
        metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
        assert trial["FinalHyperParameterTuningJobObjectiveMetric"] == {
            "MetricName": "accuracy", "Value": metrics["accuracy"]}
        assert trial["ObjectiveStatus"] == "Succeeded"
        body = s3.get_object(Bucket=BUCKET, Key=f"sm-pytest/output/{name}/output/model.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as tar:
            assert tar.extractfile("model.txt").read() == f"lr={float(hps['lr'])}".encode()

    # At most 2 at once, and 2 at once indeed (the scripts' own clocks say so).
    spans = [json.loads(p.read_text()) for p in intervals.iterdir()]
    assert len(spans) == 5
    overlap = max(sum(1 for s in spans if s[0] <= start < s[1]) for start, _ in spans)
    assert overlap == 2
    assert emu.tuning_jobs["lr-search-t1"].peak_parallel == 2

    best = max(trials, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    assert desc["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    assert desc["BestTrainingJob"]["TunedHyperParameters"] == best["TunedHyperParameters"]
    outcome = tuning_outcome(desc, trials)
    assert (outcome.completed, outcome.failed, outcome.best_job) == (
        5, 0, best["TrainingJobName"])
    assert outcome.best_value == max(t.objective for t in outcome.trials)

    by_value = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="lr-search-t1", SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending", MaxResults=2)
    assert by_value["TrainingJobSummaries"][0]["TrainingJobName"] == best["TrainingJobName"]
    assert len(by_value["TrainingJobSummaries"]) == 2 and by_value["NextToken"]


def test_random_search_with_the_same_seed_runs_the_same_trials(emu):
    sm = emu.client("sagemaker")

    def tuned(name: str, seed: int) -> list[dict]:
        launch(emu, make_tune(max_jobs=3, max_parallel_jobs=3, random_seed=seed), name)
        assert wait_for(sm, name)["HyperParameterTuningJobStatus"] == "Completed"
        return [t["TunedHyperParameters"] for t in list_trials(sm, name)]

    first, again, other = tuned("seed-a", 7), tuned("seed-b", 7), tuned("seed-c", 8)
    assert first == again
    assert first != other
    assert len({t["lr"] for t in first}) == 3
    listed = sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert {(j["HyperParameterTuningJobName"], j["HyperParameterTuningJobStatus"],
             j["TrainingJobStatusCounters"]["Completed"]) for j in listed} == {
        ("seed-a", "Completed", 3), ("seed-b", "Completed", 3), ("seed-c", "Completed", 3)}


def test_a_failed_trial_counts_as_failed_and_the_grid_goes_on(emu):
    grid = make_tune(strategy="Grid", max_parallel_jobs=3, random_seed=None, ranges=(
        Range("optimizer", CATEGORICAL, values=("sgd", "adam", "rmsprop")),
        Range("lr", CATEGORICAL, values=(0.1, 0.3))))
    launch(emu, grid, "grid-t1")
    sm = emu.client("sagemaker")
    desc = wait_for(sm, "grid-t1")

    assert desc["HyperParameterTuningJobStatus"] == "Completed"
    trials = list_trials(sm, "grid-t1")
    # Exhaustive, in order: every combination once, the first range varying slowest.
    assert [(t["TunedHyperParameters"]["optimizer"], t["TunedHyperParameters"]["lr"])
            for t in trials] == [('"sgd"', "0.1"), ('"sgd"', "0.3"), ('"adam"', "0.1"),
                                 ('"adam"', "0.3"), ('"rmsprop"', "0.1"), ('"rmsprop"', "0.3")]
    failed = [t for t in trials if t["TrainingJobStatus"] == "Failed"]
    assert [t["TunedHyperParameters"]["optimizer"] for t in failed] == ['"adam"', '"adam"']
    assert failed[0]["FailureReason"] == "AlgorithmError: RuntimeError: adam diverged, exit code: 1"
    assert failed[0]["ObjectiveStatus"] == "Failed"
    assert "FinalHyperParameterTuningJobObjectiveMetric" not in failed[0]
    assert desc["TrainingJobStatusCounters"]["Completed"] == 4
    assert desc["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert desc["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 2}
    # The script got the categorical value decoded, as a static hyperparameter would be.
    lines = [line for stream in emu.log_events(trials[4]["TrainingJobName"]).values()
             for line in stream]
    assert "args lr=0.1 batch=64 optimizer='rmsprop'" in lines
    best = desc["BestTrainingJob"]
    assert best["TunedHyperParameters"]["lr"] == "0.3"  # accuracy peaks at lr=0.3
    assert best["TrainingJobStatus"] == "Completed"
    outcome = tuning_outcome(desc, trials)
    assert (outcome.completed, outcome.failed) == (4, 2)
    assert [t.values["optimizer"] for t in outcome.trials if t.status == "Failed"] == [
        "adam", "adam"]


def test_stop_ends_the_running_trials_and_starts_no_more(emu):
    run = make_run(sleep=20.0)
    launch(emu, make_tune(max_jobs=4, max_parallel_jobs=2), "stop-t1", run)
    sm = emu.client("sagemaker")
    runner = emu.tuning_jobs["stop-t1"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names_now = [t.name for t in runner.trials]
        if len(names_now) == 2 and all(
                emu.jobs[n].stored.secondary_status == "Training" for n in names_now):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"two trials never trained: {runner.trials}")

    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stop-t1")
    status = sm.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="stop-t1")["HyperParameterTuningJobStatus"]
    assert status in ("Stopping", "Stopped")
    desc = wait_for(sm, "stop-t1", timeout=20)

    assert desc["HyperParameterTuningJobStatus"] == "Stopped"
    trials = list_trials(sm, "stop-t1")
    assert len(trials) == 2  # none started after the stop
    assert {t["TrainingJobStatus"] for t in trials} == {"Stopped"}
    assert desc["TrainingJobStatusCounters"]["Stopped"] == 2
    assert desc["TrainingJobStatusCounters"]["InProgress"] == 0
    assert "BestTrainingJob" not in desc
    for trial in trials:  # stopped through StopTrainingJob, like any job
        assert sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])[
            "SecondaryStatus"] == "Stopped"
    code, message = refusal(lambda: sm.stop_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="stop-t1"))
    assert (code, message) == ("ValidationException", "The request was rejected because the"
                               " hyperparameter tuning job is in status Stopped.")


def test_bad_requests_are_refused_before_anything_runs(emu):
    sm = emu.client("sagemaker")
    good = tuning_request(make_tune(), training_request(), "refused-1")

    name = "t" * 33
    code, message = refusal(lambda: sm.create_hyper_parameter_tuning_job(
        **{**good, "HyperParameterTuningJobName": name}))
    assert code == "ValidationException"
    assert message == (
        f"2 validation errors detected: Value '{name}' at 'hyperParameterTuningJobName' failed"
        " to satisfy constraint: Member must have length less than or equal to 32; "
        f"Value '{name}' at 'hyperParameterTuningJobName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")

    hyperband = json.loads(json.dumps(good))
    hyperband["HyperParameterTuningJobConfig"].update(Strategy="Hyperband",
                                                      TrainingJobEarlyStoppingType="Auto")
    code, message = refusal(lambda: sm.create_hyper_parameter_tuning_job(**hyperband))
    assert (code, message) == ("ValidationException", "Because the Hyperband strategy has its"
                               " own advanced internal early stopping mechanism,"
                               " TrainingJobEarlyStoppingType must be OFF to use Hyperband.")

    grid = tuning_request(make_tune(strategy="Grid", ranges=(
        Range("optimizer", CATEGORICAL, values=("sgd", "adam")),)), training_request(), "g")
    grid["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"] = 3
    code, message = refusal(lambda: sm.create_hyper_parameter_tuning_job(**grid))
    assert "MaxNumberOfTrainingJobs (3) must equal the number of distinct categorical" \
           " combinations (2)" in message

    unknown = json.loads(json.dumps(good))
    unknown["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"][
        "MetricName"] = "test_accuracy"
    code, message = refusal(lambda: sm.create_hyper_parameter_tuning_job(**unknown))
    assert message == ("The objective metric test_accuracy is not one of the MetricDefinitions"
                       " of the training job definition (accuracy, loss).")

    assert [operation for operation, _ in emu.refused] == ["CreateHyperParameterTuningJob"] * 4
    assert emu.tuning_jobs == {} and emu.jobs == {}
    assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []


def test_leaving_the_emulator_mid_search_ends_the_search_and_its_trials(tmp_path):
    with Emulator(stop_grace_seconds=0.5, workdir=tmp_path) as emu:
        emu.client("s3").create_bucket(Bucket=BUCKET)
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(TUNED_TRAIN)
        emu.upload_source(source, SOURCE)
        launch(emu, make_tune(max_jobs=4, max_parallel_jobs=2), "close-t1",
               make_run(sleep=20.0))
        runner = emu.tuning_jobs["close-t1"]
        deadline = time.monotonic() + 20
        while not runner.trials and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner.trials
    assert runner.done.is_set()
    assert all(emu.jobs[t.name].done.is_set() for t in runner.trials)
    assert len(runner.trials) <= 2


# --- early stopping -----------------------------------------------------------------------

# Three good trials first (one at a time), then two whose accuracy is far below theirs at
# every epoch (it peaks at lr=0.3): the median rule stops those at their first epoch.
EARLY_GRID = (Range("lr", CATEGORICAL, values=(0.3, 0.31, 0.29, 0.9, 1.1)),)


def early_stopping_search(emu, name: str, early_stopping: str) -> tuple[dict, list[dict]]:
    tune = make_tune(strategy="Grid", max_jobs=5, max_parallel_jobs=1, random_seed=None,
                     early_stopping=early_stopping, ranges=EARLY_GRID)
    launch(emu, tune, name, make_run(epochs=6, sleep=0.4))
    sm = emu.client("sagemaker")
    desc = wait_for(sm, name, timeout=120)
    return desc, list_trials(sm, name)


def epochs_logged(emu, trial: dict) -> int:
    return sum(line.startswith("epoch=") for stream in
               emu.log_events(trial["TrainingJobName"]).values() for line in stream)


def test_early_stopping_auto_stops_trials_worse_than_the_median_of_the_completed(emu):
    desc, trials = early_stopping_search(emu, "early-auto", "Auto")

    assert desc["HyperParameterTuningJobStatus"] == "Completed", desc.get("FailureReason")
    assert [t["TrainingJobStatus"] for t in trials] == ["Completed"] * 3 + ["Stopped"] * 2
    assert desc["TrainingJobStatusCounters"] == {"Completed": 3, "InProgress": 0,
                                                 "RetryableError": 0, "NonRetryableError": 0,
                                                 "Stopped": 2}
    # A trial stopped early reported its objective, which the search used.
    assert desc["ObjectiveStatusCounters"] == {"Succeeded": 5, "Pending": 0, "Failed": 0}
    sm = emu.client("sagemaker")
    for trial in trials[3:]:
        job = sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert job["SecondaryStatus"] == "Stopped" and "FailureReason" not in trial
        assert trial["ObjectiveStatus"] == "Succeeded"
        value = trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        assert value == pytest.approx(1.0 - abs(float(trial["TunedHyperParameters"]["lr"])
                                                - 0.3) - 0.0064)
        assert 1 <= epochs_logged(emu, trial) < 6  # stopped before its end
    assert all(epochs_logged(emu, t) == 6 for t in trials[:3])
    runner = emu.tuning_jobs["early-auto"]
    assert [t.stopped_early for t in runner.trials] == [False] * 3 + [True] * 2
    # The best is a completed trial: the one at lr=0.3.
    assert desc["BestTrainingJob"]["TrainingJobName"] == trials[0]["TrainingJobName"]
    assert desc["BestTrainingJob"]["TrainingJobStatus"] == "Completed"
    outcome = tuning_outcome(desc, trials)
    assert (outcome.completed, outcome.stopped, outcome.failed) == (3, 2, 0)


def test_early_stopping_off_runs_every_trial_to_its_end(emu):
    desc, trials = early_stopping_search(emu, "early-off", "Off")

    assert desc["HyperParameterTuningJobStatus"] == "Completed"
    assert [t["TrainingJobStatus"] for t in trials] == ["Completed"] * 5
    assert desc["TrainingJobStatusCounters"]["Stopped"] == 0
    assert all(epochs_logged(emu, t) == 6 for t in trials)
    assert emu.tuning_jobs["early-off"].early_stopping is None


def test_the_median_rule_as_the_developer_guide_states_it():
    import re

    from sm_pytest.sagemaker.emulator.tuning_rules import MedianRule, early_stopping_rule

    rule = MedianRule("accuracy", re.compile(r"accuracy=([0-9.]+)"), maximize=True)
    done = [[0.5, 0.7, 0.9], [0.6, 0.8], [0.4, 0.6, 0.8]]
    # Epoch 1: running averages 0.5, 0.6, 0.4, median 0.5; epoch 2: 0.6, 0.7, 0.5 -> 0.6.
    assert rule.stops([0.45], done) and not rule.stops([0.5], done)
    assert not rule.stops([0.45, 0.61], done) and rule.stops([0.9, 0.59], done)
    # Epoch 3: only two completed trials reached it, too few for a median.
    assert not rule.stops([0.9, 0.9, 0.1], done)
    assert not rule.stops([0.1], done[:2])
    minimize = MedianRule("loss", re.compile("loss=([0-9.]+)"), maximize=False)
    assert minimize.stops([0.55], done) and not minimize.stops([0.45], done)
    assert rule.value("epoch=2 accuracy=0.9375 loss=0.2") == 0.9375
    assert rule.value("epoch=2 loss=0.2") is None and rule.value("accuracy=nan") is None

    request = tuning_request(make_tune(strategy="Hyperband"), training_request(), "h-1")
    hyperband = early_stopping_rule(request)
    assert (hyperband.metric, hyperband.maximize, hyperband.min_epochs) == (
        "accuracy", True, 1)
    request["HyperParameterTuningJobConfig"]["StrategyConfig"][
        "HyperbandStrategyConfig"]["MinResource"] = 2
    late = early_stopping_rule(request)
    assert not late.stops([0.1], done) and late.stops([0.1, 0.1], done)
    assert early_stopping_rule(tuning_request(make_tune(), training_request(), "r-1")) is None
    auto = early_stopping_rule(tuning_request(make_tune(early_stopping="Auto"),
                                              training_request(), "r-2"))
    assert auto.regex.pattern == "accuracy=([0-9.]+)"
