"""The in-process SageMaker emulator: jobs really run, per the container contract."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402

from conftest import process_alive  # noqa: E402
from sm_pytest.sagemaker.cloudwatch import LOG_GROUP  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator, EmulatorError  # noqa: E402

BUCKET = "sm-emulator-tests"
ROLE = "arn:aws:iam::123456789012:role/sm-emulator-tests"
TERMINAL = ("Completed", "Failed", "Stopped")

# A stand-in for src/train.py: script mode, checkpoints per epoch and resumes, no torch.
FAKE_TRAIN = '''
import argparse, json, os, signal, subprocess, sys, time
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--crash", default="")
p.add_argument("--hang", type=float, default=0.0)
p.add_argument("--child", default="")
p.add_argument("--on_term", default="")
p.add_argument("--meet", default="")
p.add_argument("--meet_count", type=int, default=0)
args, _ = p.parse_known_args()

if args.meet:  # a rendezvous: only jobs that really run at the same time get past it
    open(os.path.join(args.meet, os.environ["TRAINING_JOB_NAME"]), "w").close()
    deadline = time.time() + 15
    while len(os.listdir(args.meet)) < args.meet_count:
        if time.time() > deadline:
            sys.exit("the other jobs never started")
        time.sleep(0.02)

if args.on_term:
    def on_term(signum, frame):
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "partial.txt"), "w") as f:
            f.write(args.on_term)
        print("got SIGTERM, saved the model", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)

ckpt_dir = os.environ["SM_CHECKPOINT_DIR"]
ckpt = os.path.join(ckpt_dir, "checkpoint.json")
start = 0
if os.path.exists(ckpt):
    with open(ckpt) as f:
        start = json.load(f)["epoch"]
    print(f"resuming from checkpoint at epoch {start}", flush=True)
with open(os.path.join(os.environ["SM_CHANNEL_TRAINING"], "sample.txt")) as f:
    data = f.read()
print(f"args={sys.argv[1:]} data={data} flag={os.environ.get('MY_FLAG')}", flush=True)
if args.child:
    child = subprocess.Popen(["sleep", "60"])
    print(f"child={child.pid}", flush=True)
for epoch in range(start + 1, args.epochs + 1):
    time.sleep(args.sleep)
    print(f"epoch={epoch} loss={1.0 / epoch:.4f} accuracy={0.5 + 0.1 * epoch:.4f}", flush=True)
    with open(ckpt + ".tmp", "w") as f:
        json.dump({"epoch": epoch}, f)
    os.replace(ckpt + ".tmp", ckpt)
time.sleep(args.hang)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write(f"epochs={args.epochs} resumed_from={start}")
if args.crash:
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write(args.crash)
    print("Traceback (most recent call last): boom", flush=True)
    sys.exit(3)
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "metrics.json"), "w") as f:
    json.dump({"epochs": args.epochs}, f)
'''

METRICS = [
    {"Name": "loss", "Regex": r"loss=([0-9.]+)"},
    {"Name": "accuracy", "Regex": r"accuracy=([0-9.]+)"},
]


def stage(emu: Emulator, tmp_path) -> None:
    """The bucket, sourcedir.tar.gz and the training channel."""
    s3 = emu.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(FAKE_TRAIN)
    emu.upload_source(source, f"s3://{BUCKET}/code/sourcedir.tar.gz")
    s3.put_object(Bucket=BUCKET, Key="data/training/sample.txt", Body=b"mnist-ish")


@pytest.fixture
def emu(tmp_path):
    with Emulator(stop_grace_seconds=1.0, log_flush_seconds=0.1) as emu:
        stage(emu, tmp_path)
        yield emu


def request(name: str, *, spot: bool = False, max_run: int = 60, **hyperparameters) -> dict:
    hps = {"epochs": 3, **hyperparameters}
    encoded = {k: json.dumps(v) for k, v in hps.items()}
    encoded["sagemaker_program"] = json.dumps("train.py")
    encoded["sagemaker_submit_directory"] = json.dumps(f"s3://{BUCKET}/code/sourcedir.tar.gz")
    req = {
        "TrainingJobName": name,
        "HyperParameters": encoded,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8.0"
            "-cpu-py312",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "InputDataConfig": [{
            "ChannelName": "training",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                            "S3Uri": f"s3://{BUCKET}/data/training",
                                            "S3DataDistributionType": "FullyReplicated"}},
        }],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_run},
        "Environment": {"MY_FLAG": "on"},
        "Tags": [{"Key": "project", "Value": "sm-pytest"}],
    }
    if spot:
        req["EnableManagedSpotTraining"] = True
        req["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_run * 2
        req["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/checkpoints/{name}"}
    return req


def wait_for(sm, name: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        desc = sm.describe_training_job(TrainingJobName=name)
        if desc["TrainingJobStatus"] in TERMINAL or time.monotonic() > deadline:
            return desc
        time.sleep(0.05)


def tar_members(s3, key: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def keys(s3, prefix: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def transitions(desc: dict) -> list[str]:
    return [t["Status"] for t in desc["SecondaryStatusTransitions"]]


def test_job_completes_with_real_metrics_logs_and_artifacts(emu):
    sm, s3, logs = emu.client("sagemaker"), emu.client("s3"), emu.client("logs")
    sent = request("ok-1")
    sm.create_training_job(**sent)
    assert sm.describe_training_job(TrainingJobName="ok-1")["TrainingJobStatus"] == "InProgress"
    desc = wait_for(sm, "ok-1")

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["SecondaryStatus"] == "Completed"
    assert transitions(desc) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert all("EndTime" in t for t in desc["SecondaryStatusTransitions"])
    final = {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]}
    assert final == {"loss": pytest.approx(0.3333), "accuracy": pytest.approx(0.8)}
    # Describe shows what was sent, not moto's rewrites.
    assert desc["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    assert desc["Environment"] == {"MY_FLAG": "on"}
    assert desc["TrainingStartTime"] <= desc["TrainingEndTime"]
    assert desc["TrainingTimeInSeconds"] >= 1
    assert desc["BillableTimeInSeconds"] == desc["TrainingTimeInSeconds"]
    assert "FailureReason" not in desc

    # The request exactly as the client sent it.
    assert len(emu.requests) == 1
    captured = emu.requests[0]
    assert captured["Environment"] == {"MY_FLAG": "on"}
    assert captured["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    assert captured["Tags"] == [{"Key": "project", "Value": "sm-pytest"}]
    assert captured["HyperParameters"] == sent["HyperParameters"]

    # One log stream (one instance, one attempt), named as SageMaker names it.
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP,
                                        logStreamNamePrefix="ok-1/")["logStreams"]
    assert [s["logStreamName"] for s in streams] == emu.jobs["ok-1"].log_streams
    assert re.fullmatch(r"ok-1/algo-1-\d{10}", streams[0]["logStreamName"])
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    lines = [e["message"] for e in events]
    assert "args=['--epochs', '3'] data=mnist-ish flag=on" in lines
    assert [ln for ln in lines if ln.startswith("epoch=")] == [
        "epoch=1 loss=1.0000 accuracy=0.6000",
        "epoch=2 loss=0.5000 accuracy=0.7000",
        "epoch=3 loss=0.3333 accuracy=0.8000",
    ]

    assert desc["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{BUCKET}/output/ok-1/output/model.tar.gz")
    assert tar_members(s3, "output/ok-1/output/model.tar.gz") == {
        "model.txt": b"epochs=3 resumed_from=0"}
    assert tar_members(s3, "output/ok-1/output/output.tar.gz") == {
        "metrics.json": b'{"epochs": 3}'}

    summaries = sm.list_training_jobs()["TrainingJobSummaries"]
    assert [(s["TrainingJobName"], s["TrainingJobStatus"]) for s in summaries] == [
        ("ok-1", "Completed")]


def test_job_that_crashes_fails_with_the_scripts_reason(emu):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    sm.create_training_job(**request("crash-1", epochs=2, crash="ValueError: loss is NaN"))
    desc = wait_for(sm, "crash-1")

    assert desc["TrainingJobStatus"] == "Failed"
    assert desc["SecondaryStatus"] == "Failed"
    assert desc["FailureReason"] == "AlgorithmError: ValueError: loss is NaN, exit code: 1"
    assert transitions(desc)[-2:] == ["Uploading", "Failed"]
    (lines,) = emu.log_events("crash-1").values()
    assert "Traceback (most recent call last): boom" in lines
    assert lines[-1] == "Reporting training FAILURE"
    # What the script wrote to the model dir is uploaded; there was no output data.
    assert keys(s3, "output/crash-1/") == ["output/crash-1/output/model.tar.gz"]
    assert tar_members(s3, "output/crash-1/output/model.tar.gz") == {
        "model.txt": b"epochs=2 resumed_from=0"}
    # Metrics seen before the crash still count.
    assert {m["MetricName"] for m in desc["FinalMetricDataList"]} == {"loss", "accuracy"}


def _dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):  # a zombie, killed but not yet reaped, counts as dead
            return True
        time.sleep(0.05)
    return False


def wait_for_line(runner, prefix: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for attempt in runner.attempts:
            for line in list(attempt.lines):
                if line.startswith(prefix):
                    return line
        assert time.monotonic() < deadline, runner.describe()
        time.sleep(0.05)


def test_stop_training_job_kills_the_process_group(emu):
    sm = emu.client("sagemaker")
    sm.create_training_job(**request("stop-1", epochs=1, hang=60, child="yes"))
    runner = emu.jobs["stop-1"]
    child = int(wait_for_line(runner, "child=")[len("child="):])
    pid = runner.attempts[0].pid

    sm.stop_training_job(TrainingJobName="stop-1")
    assert sm.describe_training_job(TrainingJobName="stop-1")["TrainingJobStatus"] in (
        "Stopping", "Stopped")
    desc = wait_for(sm, "stop-1")

    assert desc["TrainingJobStatus"] == "Stopped"
    assert desc["SecondaryStatus"] == "Stopped"
    assert transitions(desc)[-3:] == ["Stopping", "Uploading", "Stopped"]
    assert "FailureReason" not in desc
    assert runner.attempts[0].returncode == -15  # SIGTERM, within the grace period
    for gone in (pid, child):
        assert _dead(gone), f"process {gone} survived StopTrainingJob"
    with pytest.raises(ClientError) as info:
        sm.stop_training_job(TrainingJobName="stop-1")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "in status Stopped" in info.value.response["Error"]["Message"]


def test_spot_interruption_resumes_from_the_checkpoint(emu):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    emu.interrupt_spot("spot-")  # armed before the job exists: a name prefix
    sm.create_training_job(**request("spot-1", spot=True, epochs=4, sleep=0.4))
    desc = wait_for(sm, "spot-1")

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert transitions(desc) == ["Starting", "Downloading", "Training", "Interrupted",
                                 "Starting", "Downloading", "Training", "Uploading", "Completed"]
    runner = emu.jobs["spot-1"]
    assert runner.interrupted == 1
    assert [a.outcome for a in runner.attempts] == ["interrupted", "exited"]
    first, second = emu.log_events("spot-1").values()  # two attempts, two streams
    assert len(emu.jobs["spot-1"].log_streams) == 2
    assert not any(ln.startswith("resuming") for ln in first)
    done_first = [int(ln[6]) for ln in first if ln.startswith("epoch=")]
    assert done_first and done_first[0] == 1 and "epoch=4" not in " ".join(first)
    resumed_at = int(next(ln for ln in second if ln.startswith("resuming")).rsplit(" ", 1)[1])
    assert resumed_at >= 1
    assert [ln[:7] for ln in second if ln.startswith("epoch=")] == [
        f"epoch={e}" for e in range(resumed_at + 1, 5)]
    # Same final state as an uninterrupted run, and the checkpoints are in S3.
    assert tar_members(s3, "output/spot-1/output/model.tar.gz") == {
        "model.txt": f"epochs=4 resumed_from={resumed_at}".encode()}
    assert {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]}["loss"] == 0.25
    ckpt = s3.get_object(Bucket=BUCKET, Key="checkpoints/spot-1/checkpoint.json")
    assert json.loads(ckpt["Body"].read()) == {"epoch": 4}
    assert desc["BillableTimeInSeconds"] <= desc["TrainingTimeInSeconds"]
    if desc["TrainingTimeInSeconds"] >= 2:
        assert desc["BillableTimeInSeconds"] < desc["TrainingTimeInSeconds"]


def test_throttling_then_success(emu):
    sm = emu.client("sagemaker")
    emu.throttle("CreateTrainingJob", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            sm.create_training_job(**request("throttled-1"))
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
    sm.create_training_job(**request("throttled-1"))
    assert emu.injected == [("CreateTrainingJob", "ThrottlingException")] * 2
    assert len(emu.requests) == 1

    emu.throttle("describe_training_job", code="ResourceLimitExceeded")
    with pytest.raises(ClientError) as info:
        sm.describe_training_job(TrainingJobName="throttled-1")
    assert info.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert wait_for(sm, "throttled-1")["TrainingJobStatus"] == "Completed"

    with pytest.raises(ClientError) as info:  # and names stay unique, as on SageMaker
        sm.create_training_job(**request("throttled-1"))
    assert info.value.response["Error"]["Code"] == "ResourceInUse"


def test_max_runtime_stops_the_job_after_sigterm(emu):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    sm.create_training_job(**request("slow-1", max_run=1, epochs=1, hang=60, on_term="saved"))
    started = time.monotonic()
    desc = wait_for(sm, "slow-1")

    assert time.monotonic() - started < 10
    assert desc["TrainingJobStatus"] == "Stopped"
    assert desc["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert transitions(desc)[-4:] == ["Training", "Stopping", "Uploading", "MaxRuntimeExceeded"]
    assert "FailureReason" not in desc
    (lines,) = emu.log_events("slow-1").values()
    assert "got SIGTERM, saved the model" in lines
    # What the program saved in the SIGTERM grace period is the model.
    assert tar_members(s3, "output/slow-1/output/model.tar.gz") == {"partial.txt": b"saved"}


def test_jobs_created_from_other_threads_run_in_parallel(emu, tmp_path):
    meet = tmp_path / "meet"
    meet.mkdir()

    def create(i: int) -> str:
        sm = emu.client("sagemaker")
        sm.create_training_job(**request(f"par-{i}", epochs=1, meet=str(meet), meet_count=3))
        return f"par-{i}"

    with ThreadPoolExecutor(3) as pool:
        names = list(pool.map(create, range(3)))
    assert emu.wait_idle(timeout=30)
    sm = emu.client("sagemaker")
    described = [sm.describe_training_job(TrainingJobName=n) for n in names]
    assert [d["TrainingJobStatus"] for d in described] == ["Completed"] * 3, [
        d.get("FailureReason") for d in described]
    assert sorted(os.listdir(meet)) == names


def test_failures_before_the_program_runs(emu):
    sm = emu.client("sagemaker")
    bad_channel = request("nodata-1")
    bad_channel["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = (
        f"s3://{BUCKET}/nothing/here")
    sm.create_training_job(**bad_channel)
    no_program = request("noprog-1")
    no_program["HyperParameters"]["sagemaker_program"] = json.dumps("missing.py")
    sm.create_training_job(**no_program)

    desc = wait_for(sm, "nodata-1")
    assert desc["TrainingJobStatus"] == "Failed"
    assert desc["FailureReason"].startswith(
        f'ClientError: No S3 objects found under S3 URL "s3://{BUCKET}/nothing/here"')
    assert transitions(desc) == ["Starting", "Downloading", "Failed"]
    desc = wait_for(sm, "noprog-1")
    assert desc["TrainingJobStatus"] == "Failed"
    assert desc["FailureReason"].startswith("AlgorithmError: program 'missing.py' not found")

    # A sourcedir.tar.gz that reaches outside its folder is refused, nothing is written.
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.py")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    emu.client("s3").put_object(Bucket=BUCKET, Key="code/evil.tar.gz", Body=evil.getvalue())
    traversal = request("evil-1")
    traversal["HyperParameters"]["sagemaker_submit_directory"] = json.dumps(
        f"s3://{BUCKET}/code/evil.tar.gz")
    sm.create_training_job(**traversal)
    desc = wait_for(sm, "evil-1")
    assert desc["TrainingJobStatus"] == "Failed"
    assert "could not download and extract sagemaker_submit_directory" in desc["FailureReason"]
    assert "../escaped.py" in desc["FailureReason"]  # sm_pytest.run.safe_tar names the member
    assert not list(emu.workdir.rglob("escaped.py"))


def test_leaving_the_emulator_stops_running_jobs(tmp_path):
    with Emulator(stop_grace_seconds=0.2) as emu:
        stage(emu, tmp_path)
        emu.client("sagemaker").create_training_job(**request("left-1", epochs=1, hang=60))
        runner = emu.jobs["left-1"]
        wait_for_line(runner, "epoch=1")
        pid = runner.attempts[0].pid
    assert not runner.is_alive()
    assert runner.status == "Stopped"
    assert _dead(pid)


def test_other_moto_versions_are_refused(monkeypatch):
    from sm_pytest.sagemaker.emulator import patches

    monkeypatch.setattr(patches, "_dist_version", lambda name: "5.3.0")
    with pytest.raises(ImportError, match="written against moto 5.2.5; moto 5.3.0 is installed"):
        patches._check_moto_version()


def test_environment_and_patches_are_restored(monkeypatch):
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setenv("AWS_PROFILE", "real-account")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    original_create = SageMakerResponse.create_training_job
    with Emulator() as emu:
        assert "AWS_PROFILE" not in os.environ
        assert os.environ["AWS_MAX_ATTEMPTS"] == "1"
        assert os.environ["AWS_DEFAULT_REGION"] == emu.region
        with open(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"]) as config:
            assert "TelemetryOptOut: true" in config.read()
        assert SageMakerResponse.create_training_job is not original_create
        with pytest.raises(EmulatorError):
            Emulator().start()
    assert os.environ["AWS_PROFILE"] == "real-account"
    assert "AWS_MAX_ATTEMPTS" not in os.environ
    assert SageMakerResponse.create_training_job is original_create
    assert not hasattr(SageMakerResponse, "stop_training_job")


def test_sagemaker_core_sdk_and_experiments(emu):
    pytest.importorskip("sagemaker.core")
    from sagemaker.core.experiments.run import Run
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.resources import Tag, TrainingJob
    from sagemaker.core.shapes import (
        AlgorithmSpecification,
        Channel,
        CheckpointConfig,
        DataSource,
        ExperimentConfig,
        MetricDefinition,
        OutputDataConfig,
        ResourceConfig,
        S3DataSource,
        StoppingCondition,
    )

    boto_session = emu.session()
    session = Session(boto_session=boto_session, default_bucket=BUCKET)
    with Run(experiment_name="emulator-exp", run_name="r1", sagemaker_session=session) as run:
        run.log_parameters({"epochs": 2})
        config = run.experiment_config

    sent = request("sdk-1", spot=True, epochs=2)
    job = TrainingJob.create(
        training_job_name="sdk-1",
        hyper_parameters=sent["HyperParameters"],
        algorithm_specification=AlgorithmSpecification(
            training_image=sent["AlgorithmSpecification"]["TrainingImage"],
            training_input_mode="File",
            metric_definitions=[MetricDefinition(name=d["Name"], regex=d["Regex"])
                                for d in METRICS]),
        role_arn=ROLE,
        input_data_config=[Channel(channel_name="training", data_source=DataSource(
            s3_data_source=S3DataSource(s3_data_type="S3Prefix",
                                        s3_uri=f"s3://{BUCKET}/data/training")))],
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{BUCKET}/output"),
        resource_config=ResourceConfig(instance_type="ml.m5.xlarge", instance_count=1,
                                       volume_size_in_gb=10, keep_alive_period_in_seconds=60),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=60,
                                             max_wait_time_in_seconds=120),
        enable_managed_spot_training=True,
        checkpoint_config=CheckpointConfig(s3_uri=f"s3://{BUCKET}/checkpoints/sdk-1"),
        environment={"MY_FLAG": "sdk"},
        experiment_config=ExperimentConfig(experiment_name=config["ExperimentName"],
                                           trial_name=config["TrialName"],
                                           run_name=config["RunName"]),
        tags=[Tag(key="project", value="sm-pytest")],
        session=boto_session,
        region=emu.region,
    )
    deadline = time.monotonic() + 20
    while job.training_job_status == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.05)
        job.refresh()

    assert job.training_job_status == "Completed", job.failure_reason
    assert {m.metric_name: m.value for m in job.final_metric_data_list} == {
        "loss": 0.5, "accuracy": 0.7}
    assert job.environment == {"MY_FLAG": "sdk"}
    captured = emu.requests[-1]
    assert captured["Environment"] == {"MY_FLAG": "sdk"}
    assert captured["Tags"] == [{"Key": "project", "Value": "sm-pytest"}]
    assert captured["ExperimentConfig"] == {"ExperimentName": "emulator-exp",
                                            "TrialName": "Default-Run-Group-emulator-exp",
                                            "RunName": "emulator-exp-r1"}
    (lines,) = emu.log_events("sdk-1").values()
    assert "args=['--epochs', '2'] data=mnist-ish flag=sdk" in lines

    # Experiments calls went to moto; the job got a component of its own, as on AWS.
    sm = emu.client("sagemaker")
    components = sm.list_trial_components(ExperimentName="emulator-exp")
    run, own = sorted(components["TrialComponentSummaries"],
                      key=lambda s: s["TrialComponentName"])
    assert run["TrialComponentName"] == "emulator-exp-r1"
    assert own["TrialComponentName"] == "sdk-1-aws-training-job"
    assert own["TrialComponentSource"]["SourceType"] == "SageMakerTrainingJob"
    described = sm.describe_trial_component(TrialComponentName="emulator-exp-r1")
    assert described["Parameters"] == {"epochs": {"NumberValue": 2.0}}
    assert {"CreateExperiment", "CreateTrial", "CreateTrialComponent",
            "AssociateTrialComponent"} <= set(emu.calls)


@pytest.mark.parametrize(("prefix", "key", "expected"), [
    ("data/train", "data/train/x.csv", "x.csv"),
    ("data/train/", "data/train/sub/y.csv", "sub/y.csv"),
    ("data/train.csv", "data/train.csv", "train.csv"),
    ("data/tr", "data/train/x.csv", "train/x.csv"),
    ("", "x.csv", "x.csv"),
])
def test_channel_object_names(prefix, key, expected):
    from sm_pytest.sagemaker.emulator.staging import relative_key

    assert relative_key(prefix, key).as_posix() == expected


def test_channel_object_names_stay_inside():
    from sm_pytest.sagemaker.emulator.staging import relative_key

    with pytest.raises(ValueError, match="unsafe object name"):
        relative_key("data/", "data/../../etc/passwd")


# Checkpoint sync as SageMaker does it (model-checkpoints.md): "If a checkpoint is deleted in
# the SageMaker container, it will also be deleted in the S3 folder."; and a rewrite that keeps
# size and mtime (shutil.copy2, os.utime) is still a write.
PRUNE_TRAIN = '''
import os
d, host = os.environ["SM_CHECKPOINT_DIR"], os.environ["SM_CURRENT_HOST"]
os.remove(os.path.join(d, "gone.bin"))  # every host deletes it
if host == "algo-1":
    os.remove(os.path.join(d, "half.bin"))  # only one host does: algo-2 still has it
    path = os.path.join(d, "keep.bin")
    st = os.stat(path)
    with open(path, "wb") as f:
        f.write(b"NEW!")  # the same size as what was restored
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
print("accuracy=0.9", flush=True)
'''


def test_checkpoint_sync_deletes_what_no_host_kept_and_sends_rewrites(emu, tmp_path):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    source = tmp_path / "prune-src"
    source.mkdir()
    (source / "train.py").write_text(PRUNE_TRAIN)
    emu.upload_source(source, f"s3://{BUCKET}/code/prune.tar.gz")
    for name in ("gone.bin", "half.bin", "keep.bin"):
        s3.put_object(Bucket=BUCKET, Key=f"checkpoints/prune-1/{name}", Body=b"OLD!")
    # under a prefix that merely starts the same: not this job's checkpoints
    s3.put_object(Bucket=BUCKET, Key="checkpoints/prune-10/gone.bin", Body=b"other")
    sent = request("prune-1")
    sent["HyperParameters"]["sagemaker_submit_directory"] = json.dumps(
        f"s3://{BUCKET}/code/prune.tar.gz")
    sent["ResourceConfig"]["InstanceCount"] = 2
    sent["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/checkpoints/prune-1"}
    sm.create_training_job(**sent)
    desc = wait_for(sm, "prune-1")

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert keys(s3, "checkpoints/prune-1") == [
        "checkpoints/prune-1/half.bin", "checkpoints/prune-1/keep.bin",
        "checkpoints/prune-10/gone.bin"]
    body = s3.get_object(Bucket=BUCKET, Key="checkpoints/prune-1/keep.bin")["Body"].read()
    assert body == b"NEW!"
