"""Multi-instance jobs on the emulator: ResourceConfig.InstanceCount N runs N hosts, each
with its own container tree and CloudWatch stream; the first host to fail fails the job;
a spot interruption restarts every host; model.tar.gz merges every host's model dir."""

from __future__ import annotations

import json
import re
import textwrap
import time

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from test_emulator import BUCKET, request, tar_members, transitions, wait_for  # noqa: E402

from conftest import process_alive  # noqa: E402
from sm_pytest.sagemaker import cloudwatch  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402

# Each host says who it is, checkpoints under its own name (every host syncs to the one S3
# prefix: model-checkpoints.md asks scripts to avoid clashes), and leaves one file of its own
# and one shared name in the model dir.
HOSTS_TRAIN = '''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--crash_on", default="")
args, _ = p.parse_known_args()
host = os.environ["SM_CURRENT_HOST"]
print(f"host={host} pid={os.getpid()} hosts={os.environ['SM_HOSTS']} "
      f"master={os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
      f"rank={os.environ.get('RANK')} world={os.environ.get('WORLD_SIZE')}", flush=True)
if args.crash_on == host:
    time.sleep(0.5)
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write(f"RuntimeError: {host} ran out of memory")
    sys.exit(2)
if args.crash_on:
    time.sleep(60)  # the healthy host: only being stopped ends it
ckpt = os.path.join(os.environ["SM_CHECKPOINT_DIR"], f"state-{host}.json")
start = json.load(open(ckpt))["epoch"] if os.path.exists(ckpt) else 0
if start:
    print(f"resuming from checkpoint at epoch {start}", flush=True)
for epoch in range(start + 1, args.epochs + 1):
    time.sleep(args.sleep)
    print(f"epoch={epoch} loss={1.0 / epoch:.4f} accuracy={0.5 + 0.1 * epoch:.4f}", flush=True)
    with open(ckpt + ".tmp", "w") as f:
        json.dump({"epoch": epoch}, f)
    os.replace(ckpt + ".tmp", ckpt)
model = os.environ["SM_MODEL_DIR"]
open(os.path.join(model, f"model-{host}.txt"), "w").write(f"resumed_from={start}")
open(os.path.join(model, "shared.txt"), "w").write(host)
open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], f"data-{host}.txt"), "w").write(host)
'''


@pytest.fixture
def emu(tmp_path):
    with Emulator(stop_grace_seconds=1.0, log_flush_seconds=0.1) as emu:
        s3 = emu.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(HOSTS_TRAIN)
        emu.upload_source(source, f"s3://{BUCKET}/code/sourcedir.tar.gz")
        s3.put_object(Bucket=BUCKET, Key="data/training/sample.txt", Body=b"mnist-ish")
        yield emu
    assert emu.refused == [], emu.refused


def hosts_request(name: str, count: int = 2, *, torch_distributed: bool = False, **kwargs):
    req = request(name, **kwargs)
    req["ResourceConfig"]["InstanceCount"] = count
    if torch_distributed:
        # What the SageMaker SDK's PyTorch estimator adds for the distribution (v2
        # pytorch/estimator.py), JSON-encoded like every hyperparameter.
        req["HyperParameters"]["sagemaker_torch_distributed_enabled"] = "true"
        req["HyperParameters"]["sagemaker_instance_type"] = json.dumps("ml.m5.xlarge")
    return req


def resource_config(host) -> dict:
    return json.loads(host.tree.resource_config_file.read_text())


def test_a_two_instance_job_runs_two_hosts_with_their_streams_trees_and_merged_model(emu):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    sm.create_training_job(**hosts_request("two-1"))
    desc = wait_for(sm, "two-1")

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert emu.requests[0]["ResourceConfig"]["InstanceCount"] == 2
    runner = emu.jobs["two-1"]
    (attempt,) = runner.attempts
    assert [h.name for h in attempt.hosts] == ["algo-1", "algo-2"]
    # One full tree per host, each with its own current_host and the whole host list.
    for host in attempt.hosts:
        assert host.tree.root == (attempt.root / "hosts" / host.name).resolve()
        config = resource_config(host)
        assert config["current_host"] == host.name
        assert config["hosts"] == ["algo-1", "algo-2"]
        assert host.returncode == 0
    # One stream per host, named as SageMaker names them: <job>/algo-<n>-<epoch seconds>.
    streams = runner.log_streams
    assert len(streams) == 2
    assert [re.fullmatch(r"two-1/(algo-\d)-\d+", s).group(1) for s in streams] == [
        "algo-1", "algo-2"]
    logs = emu.log_events("two-1")
    for stream, host in zip(streams, ("algo-1", "algo-2"), strict=True):
        said = next(line for line in logs[stream] if line.startswith("host="))
        # Both hosts meet at one local rendezvous (not algo-1:7777, which does not resolve).
        assert said.startswith(f"host={host} ")
        assert re.search(r"master=127\.0\.0\.1:\d+ ", said)
        assert logs[stream][-1] == "Reporting training SUCCESS"
    masters = {re.search(r"master=(\S+)", next(ln for ln in logs[s] if ln.startswith("host=")))
               .group(1) for s in streams}
    assert len(masters) == 1
    # model.tar.gz: every host's model dir, merged in host order (algo-2's shared.txt wins).
    assert tar_members(s3, "output/two-1/output/model.tar.gz") == {
        "model-algo-1.txt": b"resumed_from=0", "model-algo-2.txt": b"resumed_from=0",
        "shared.txt": b"algo-2"}
    assert tar_members(s3, "output/two-1/output/output.tar.gz") == {
        "data-algo-1.txt": b"algo-1", "data-algo-2.txt": b"algo-2"}
    final = {m["MetricName"]: m["Value"] for m in desc["FinalMetricDataList"]}
    assert final["loss"] == pytest.approx(0.3333)


def test_one_instance_keeps_the_single_tree_and_stream(emu):
    sm = emu.client("sagemaker")
    sm.create_training_job(**hosts_request("one-1", count=1))
    assert wait_for(sm, "one-1")["TrainingJobStatus"] == "Completed"
    (attempt,) = emu.jobs["one-1"].attempts
    assert attempt.tree.root == (attempt.root / "container").resolve()
    assert not (attempt.root / "hosts").exists()
    assert re.fullmatch(r"one-1/algo-1-\d+", attempt.log_stream)
    assert emu.jobs["one-1"].log_streams == [attempt.log_stream]


def test_torch_distributed_runs_torchrun_on_every_host_with_its_node_rank(emu):
    pytest.importorskip("torch")
    sm = emu.client("sagemaker")
    sm.create_training_job(**hosts_request("ddp-1", torch_distributed=True))
    desc = wait_for(sm, "ddp-1", timeout=90)

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    sent = emu.requests[0]
    assert sent["ResourceConfig"]["InstanceCount"] == 2
    assert sent["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert sent["HyperParameters"]["sagemaker_instance_type"] == '"ml.m5.xlarge"'
    (attempt,) = emu.jobs["ddp-1"].attempts
    logs = emu.log_events("ddp-1")
    streams = emu.jobs["ddp-1"].log_streams
    for rank, (host, stream) in enumerate(zip(attempt.hosts, streams, strict=True)):
        command = host.tree.command
        assert command[1:3] == ["-m", "torch.distributed.run"]
        assert command[command.index("--nnodes") + 1] == "2"
        assert command[command.index("--node_rank") + 1] == str(rank)
        # The toolkit still sees the flag in hyperparameters.json (it picks the runner).
        stored = json.loads(host.tree.hyperparameters_file.read_text())
        assert stored["sagemaker_torch_distributed_enabled"] == "true"
        said = next(line for line in logs[stream] if line.startswith("host="))
        assert f"rank={rank} world=2" in said  # torchrun's own variables


def test_a_host_that_crashes_fails_the_job_with_its_reason_and_stops_the_other(emu):
    sm = emu.client("sagemaker")
    sm.create_training_job(**hosts_request("crash-1", crash_on="algo-2"))
    desc = wait_for(sm, "crash-1")

    assert desc["TrainingJobStatus"] == "Failed"
    assert desc["FailureReason"] == (
        "AlgorithmError: algo-2: RuntimeError: algo-2 ran out of memory, exit code: 1")
    (attempt,) = emu.jobs["crash-1"].attempts
    first, second = attempt.hosts
    assert attempt.failed_host is second and second.returncode == 2
    assert first.returncode is not None and first.returncode < 0  # stopped by a signal
    assert not process_alive(first.pid), "the healthy host survived its job's failure"
    assert desc["TrainingTimeInSeconds"] < 30
    streams = emu.log_events("crash-1")
    assert streams[second.log_stream][-1] == "Reporting training FAILURE"


# The race of a crash in a collective, without torch: algo-2 writes its reason and (as
# destroy_process_group would) lets algo-1 know, then takes 0.5 s more to exit; algo-1 fails
# with the symptom at once, so it is the first seen to exit.
SURVIVOR_RACE = '''
import os, time
host = os.environ["SM_CURRENT_HOST"]
crashed = os.path.join(os.environ["SAGEMAKER_BASE_DIR"], "..", "crashed")
failure = os.path.join(os.environ["SM_OUTPUT_DIR"], "failure")
if host == "algo-2":
    time.sleep(0.3)
    open(failure, "w").write("ValueError: the real reason, on algo-2")
    open(crashed, "w").close()
    time.sleep(0.5)
    os._exit(3)
deadline = time.time() + 30
while not os.path.exists(crashed) and time.time() < deadline:
    time.sleep(0.01)
open(failure, "w").write("RuntimeError: Connection closed by peer")
os._exit(1)
'''


def test_the_host_that_caused_a_failure_is_blamed_not_the_survivor(emu, tmp_path):
    source = tmp_path / "race"
    source.mkdir()
    (source / "train.py").write_text(SURVIVOR_RACE)
    emu.upload_source(source, f"s3://{BUCKET}/code/race.tar.gz")
    req = hosts_request("race-1")
    req["HyperParameters"]["sagemaker_submit_directory"] = json.dumps(
        f"s3://{BUCKET}/code/race.tar.gz")
    sm = emu.client("sagemaker")
    sm.create_training_job(**req)
    desc = wait_for(sm, "race-1")

    assert desc["FailureReason"] == (
        "AlgorithmError: algo-2: ValueError: the real reason, on algo-2; also failed: algo-1:"
        " RuntimeError: Connection closed by peer, exit code: 1")
    (attempt,) = emu.jobs["race-1"].attempts
    first, second = attempt.hosts
    assert first.seen_at < second.seen_at  # the survivor did exit first
    assert attempt.failed_host is second and attempt.also_failed == [first]
    assert attempt.returncode == 3 and first.returncode == 1
    streams = emu.log_events("race-1")
    assert streams[first.log_stream][-1] == "Reporting training FAILURE"
    assert streams[second.log_stream][-1] == "Reporting training FAILURE"


def test_the_emulated_hosts_divide_the_gpus_among_them(emu, monkeypatch):
    from sm_pytest.run.contract import environment

    # The hosts run on this machine, as local ones do: each its own share of the GPUs (the
    # count faked: no GPU here).
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(environment, "_gpus_on_host", lambda: 2)
    sm = emu.client("sagemaker")
    sm.create_training_job(**hosts_request("gpus-1", epochs=1))
    assert wait_for(sm, "gpus-1")["TrainingJobStatus"] == "Completed"
    (attempt,) = emu.jobs["gpus-1"].attempts
    assert [(h.tree.env["CUDA_VISIBLE_DEVICES"], h.tree.env["SM_NUM_GPUS"])
            for h in attempt.hosts] == [("0", "1"), ("1", "1")]

    monkeypatch.setattr(environment, "_gpus_on_host", lambda: 1)
    sm.create_training_job(**hosts_request("gpus-2", epochs=1))
    desc = wait_for(sm, "gpus-2")
    assert desc["TrainingJobStatus"] == "Failed"
    assert "2 hosts on this machine's 1 GPU(s): each local host needs a GPU of its own" in (
        desc["FailureReason"])


def test_stop_training_job_stops_every_host(emu):
    sm = emu.client("sagemaker")
    # Both hosts sleep until stopped ("crash_on" names no host: both wait).
    sm.create_training_job(**hosts_request("stop-2", crash_on="nobody"))
    runner = emu.jobs["stop-2"]
    deadline = time.monotonic() + 20
    while not (runner.attempts and len(runner.attempts[0].hosts) == 2
               and all(h.pid for h in runner.attempts[0].hosts)):
        assert time.monotonic() < deadline, runner.describe()
        time.sleep(0.05)
    pids = [h.pid for h in runner.attempts[0].hosts]
    sm.stop_training_job(TrainingJobName="stop-2")
    desc = wait_for(sm, "stop-2")
    assert desc["TrainingJobStatus"] == "Stopped"
    assert not any(process_alive(pid) for pid in pids)


def test_max_runtime_stops_every_host(emu):
    sm = emu.client("sagemaker")
    sm.create_training_job(**hosts_request("slow-2", crash_on="nobody", max_run=1))
    desc = wait_for(sm, "slow-2")
    assert (desc["TrainingJobStatus"], desc["SecondaryStatus"]) == (
        "Stopped", "MaxRuntimeExceeded")
    (attempt,) = emu.jobs["slow-2"].attempts
    assert attempt.outcome == "max_runtime"
    assert [h["name"] for h in emu.jobs["slow-2"].describe()["attempts"][0]["hosts"]] == [
        "algo-1", "algo-2"]
    assert all(h.returncode is not None and h.returncode < 0 for h in attempt.hosts)
    assert not any(process_alive(h.pid) for h in attempt.hosts)


def test_a_spot_interruption_restarts_every_host_and_each_resumes(emu):
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    emu.interrupt_spot("spot-2")
    sm.create_training_job(**hosts_request("spot-2", spot=True, epochs=4, sleep=0.4))
    desc = wait_for(sm, "spot-2", timeout=40)

    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert transitions(desc) == ["Starting", "Downloading", "Training", "Interrupted",
                                 "Starting", "Downloading", "Training", "Uploading", "Completed"]
    runner = emu.jobs["spot-2"]
    assert [a.outcome for a in runner.attempts] == ["interrupted", "exited"]
    assert len(runner.log_streams) == 4  # two hosts, two attempts
    restarted = runner.attempts[1]
    logs = emu.log_events("spot-2")
    resumed = {}
    for host in restarted.hosts:
        # The one S3 prefix is restored to every host: each sees both hosts' checkpoints.
        names = sorted(p.name for p in host.tree.checkpoint_dir.iterdir())
        assert names == ["state-algo-1.json", "state-algo-2.json"]
        line = next(ln for ln in logs[host.log_stream] if ln.startswith("resuming"))
        resumed[host.name] = int(line.rsplit(" ", 1)[1])
        assert resumed[host.name] >= 1
    members = tar_members(s3, "output/spot-2/output/model.tar.gz")
    assert members == {
        "model-algo-1.txt": f"resumed_from={resumed['algo-1']}".encode(),
        "model-algo-2.txt": f"resumed_from={resumed['algo-2']}".encode(),
        "shared.txt": b"algo-2"}
    for host in ("algo-1", "algo-2"):
        ckpt = s3.get_object(Bucket=BUCKET, Key=f"checkpoints/spot-2/state-{host}.json")
        assert json.loads(ckpt["Body"].read()) == {"epoch": 4}


# --- reading a multi-instance job's log ----------------------------------------------------

def test_job_log_interleaves_hosts_by_time_and_the_tail_follows_new_streams(emu):
    logs = emu.client("logs")
    logs.create_log_group(logGroupName=cloudwatch.LOG_GROUP)

    def put(stream, *events):
        if not logs.describe_log_streams(logGroupName=cloudwatch.LOG_GROUP,
                                         logStreamNamePrefix=stream)["logStreams"]:
            logs.create_log_stream(logGroupName=cloudwatch.LOG_GROUP, logStreamName=stream)
        logs.put_log_events(logGroupName=cloudwatch.LOG_GROUP, logStreamName=stream,
                            logEvents=[{"timestamp": t, "message": m} for t, m in events])

    base = int(time.time() * 1000)
    put("job/algo-1-1700000000", (base, "a1"), (base + 20, "a2 loss=2"))
    tail = cloudwatch.LogTail(logs, "job")
    assert tail.poll() == ["a1", "a2 loss=2"]  # one host so far: its lines, unprefixed
    put("job/algo-2-1700000000", (base + 10, "b1"), (base + 30, "b2 loss=1"))
    put("job/algo-1-1700000000", (base + 40, "a3"))
    # The second host's stream appears: read from its start, all new lines in time order.
    assert tail.poll() == ["b1", "b2 loss=1", "a3"]
    log = cloudwatch.job_log(logs, "job")
    assert log.lines == ["[algo-1] a1", "[algo-2] b1", "[algo-1] a2 loss=2",
                         "[algo-2] b2 loss=1", "[algo-1] a3"]
    assert log.program_lines == ["a1", "b1", "a2 loss=2", "b2 loss=1", "a3"]
    assert cloudwatch.job_log_lines(logs, "job") == log.lines


# --- through pytest, as a user runs it -----------------------------------------------------

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")


def test_two_instance_experiment_through_pytest_prefixes_train_log_and_merges(project):
    (project.root / "src" / "train.py").write_text(textwrap.dedent("""
        import os
        host = os.environ["SM_CURRENT_HOST"]
        acc = "0.97" if host == "algo-1" else "0.93"
        print(f"rank={os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}", flush=True)
        for epoch in (1, 2):
            print(f"epoch={epoch} loss=0.1 accuracy={acc}", flush=True)
        model = os.environ["SM_MODEL_DIR"]
        open(os.path.join(model, f"model-{host}.txt"), "w").write(host)
    """))
    project.experiment("two_hosts", """
        base: config/base.yaml
        instance_count: 2
        distribution:
          torch_distributed: {enabled: true}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM, "-k", "two_hosts")
    result.assert_outcomes(passed=1)
    attempt = project.artifacts / "two_hosts" / "default" / "attempt-0001"
    sent = json.loads((attempt / "request.json").read_text())
    assert sent["ResourceConfig"]["InstanceCount"] == 2
    # What the SDK's PyTorch estimator sends for the distribution (v2 pytorch/estimator.py).
    assert sent["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert sent["HyperParameters"]["sagemaker_instance_type"] == json.dumps(
        sent["ResourceConfig"]["InstanceType"])
    lines = (attempt / "train.log").read_text().splitlines()
    # Every line of every host's stream, prefixed with its host; none unprefixed.
    assert all(re.match(r"\[algo-[12]\] ", line) for line in lines), lines
    assert "[algo-1] rank=0 of 2" in lines and "[algo-2] rank=1 of 2" in lines
    assert "[algo-1] epoch=2 loss=0.1 accuracy=0.97" in lines
    assert "[algo-2] epoch=2 loss=0.1 accuracy=0.93" in lines
    assert sorted(p.name for p in (attempt / "model").iterdir()) == [
        "model-algo-1.txt", "model-algo-2.txt"]
