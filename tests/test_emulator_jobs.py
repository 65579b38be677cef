"""The emulator's job runner on its own: a JobRunner driven by an in-memory JobHost and a
tiny script, without moto's S3 or Logs, each job ending one way a real job ends."""

from __future__ import annotations

import io
import tarfile
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from emulator_host import MemoryHost, job_request, source_archive  # noqa: E402

from conftest import process_alive  # noqa: E402
from sm_pytest.sagemaker.emulator import patches  # noqa: E402
from sm_pytest.sagemaker.emulator.jobs import JobRunner  # noqa: E402

ACCOUNT = "111"
METRICS = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"},
           {"Name": "accuracy", "Regex": r"accuracy=([0-9.]+)"}]

TRAINS = '''
import os
for epoch in (1, 2):
    print(f"epoch={epoch} loss={1 / epoch:.2f} accuracy={0.4 * epoch:.2f}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("weights")
'''
FAILS = '''
import os, sys
print("reading the data", flush=True)
with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
    f.write("ValueError: bad row 7")
sys.exit(1)
'''
WAITS = '''
import time
print("ready", flush=True)
while True:
    time.sleep(0.05)
'''


def _runner(tmp_path, script: str, **overrides) -> tuple[JobRunner, MemoryHost]:
    host = MemoryHost()
    host.s3_put(ACCOUNT, "b", "src/sourcedir.tar.gz", source_archive({"train.py": script}))
    host.s3_put(ACCOUNT, "b", "data/train/x.csv", b"1,2")
    algorithm = {"TrainingImage": "image", "TrainingInputMode": "File",
                 "MetricDefinitions": METRICS}
    request = job_request(AlgorithmSpecification=algorithm, **overrides)
    # The stored job as the patched CreateTrainingJob leaves it: moto's own attributes, then
    # every one the runner will set, so that the runner's "rebind only" rule is checked too.
    stored = SimpleNamespace(model_artifacts=None)
    patches._adopt(stored, request)
    runner = JobRunner(host, name="job-1", request=request, stored=stored, account=ACCOUNT,
                       region="us-east-1", workdir=tmp_path / "jobs" / "job-1", spot=None)
    return runner, host


def _finished(runner: JobRunner, timeout: float = 30) -> SimpleNamespace:
    assert runner.done.wait(timeout), runner.describe()
    assert runner.error is None, runner.error
    return runner.stored


def _messages(host: MemoryHost) -> list[str]:
    return [event["message"] for events in host.streams.values() for event in events]


def _secondary(stored) -> list[str]:
    return [t["Status"] for t in stored.secondary_status_transitions]


def test_a_job_that_exits_0_is_completed_with_its_logs_metrics_and_model(tmp_path):
    runner, host = _runner(tmp_path, TRAINS)
    runner.start()
    stored = _finished(runner)

    assert (stored.training_job_status, stored.secondary_status) == ("Completed", "Completed")
    assert _secondary(stored) == ["Starting", "Downloading", "Training", "Uploading",
                                  "Completed"]
    assert stored.failure_reason is None
    assert stored.training_time_in_seconds >= 1
    assert stored.billable_time_in_seconds == stored.training_time_in_seconds  # not spot
    assert {m["MetricName"]: m["Value"] for m in stored.final_metric_data_list} == {
        "loss": 0.5, "accuracy": 0.8}

    assert runner.log_streams == ["job-1/algo-1-0"]
    messages = _messages(host)
    assert messages[0] == "Invoking script with the following command:"
    assert "epoch=1 loss=1.00 accuracy=0.40" in messages
    assert "epoch=2 loss=0.50 accuracy=0.80" in messages
    assert messages[-1] == "Reporting training SUCCESS"

    model = "s3://b/out/job-1/output/model.tar.gz"
    assert stored.model_artifacts == {"S3ModelArtifacts": model}
    with tarfile.open(fileobj=io.BytesIO(host.s3_get(ACCOUNT, "b",
                                                     "out/job-1/output/model.tar.gz"))) as tar:
        assert tar.extractfile("model.txt").read() == b"weights"
    assert [a["outcome"] for a in runner.describe()["attempts"]] == ["exited"]
    assert runner.attempts[0].returncode == 0


def test_a_job_that_exits_1_fails_with_the_reason_it_wrote(tmp_path):
    runner, host = _runner(tmp_path, FAILS)
    runner.start()
    stored = _finished(runner)

    assert (stored.training_job_status, stored.secondary_status) == ("Failed", "Failed")
    assert stored.failure_reason == "AlgorithmError: ValueError: bad row 7, exit code: 1"
    assert "reading the data" in _messages(host)
    assert _messages(host)[-1] == "Reporting training FAILURE"
    assert runner.attempts[0].returncode == 1
    # A failed job with an empty model directory uploads no model.
    assert (ACCOUNT, "b", "out/job-1/output/model.tar.gz") not in host.objects
    assert stored.model_artifacts is None


def test_a_job_that_fails_without_a_reason_gets_the_toolkits(tmp_path):
    runner, _ = _runner(tmp_path, "import sys\nsys.exit(3)\n")
    runner.start()
    stored = _finished(runner)

    assert stored.training_job_status == "Failed"
    assert stored.failure_reason.startswith("AlgorithmError: ExecuteUserScriptError:\n"
                                            "ExitCode 3\n")
    assert stored.failure_reason.endswith(", exit code: 1")


def _running(runner: JobRunner, host: MemoryHost, timeout: float = 30) -> int:
    """The pid of the job's program, once it has printed its first line."""
    deadline = time.monotonic() + timeout
    while "ready" not in _messages(host):
        assert time.monotonic() < deadline, runner.describe()
        assert not runner.done.is_set(), runner.describe()
        time.sleep(0.05)
    return runner.attempts[-1].pid


def test_request_stop_stops_the_job_and_its_program(tmp_path):
    runner, host = _runner(tmp_path, WAITS)
    runner.start()
    pid = _running(runner, host)
    with host.lock:  # as StopTrainingJob calls it
        runner.request_stop()
    assert runner.status == "Stopping"
    stored = _finished(runner)

    assert (stored.training_job_status, stored.secondary_status) == ("Stopped", "Stopped")
    assert _secondary(stored)[-2:] == ["Uploading", "Stopped"]
    assert stored.failure_reason is None
    assert runner.attempts[0].outcome == "stopped"
    assert not process_alive(pid)


def test_a_job_past_max_runtime_is_stopped_as_max_runtime_exceeded(tmp_path):
    runner, host = _runner(tmp_path, WAITS, StoppingCondition={"MaxRuntimeInSeconds": 1})
    runner.start()
    pid = _running(runner, host)
    stored = _finished(runner)

    assert (stored.training_job_status, stored.secondary_status) == (
        "Stopped", "MaxRuntimeExceeded")
    assert "Stopping the training job: MaxRuntimeInSeconds exceeded" in [
        t["StatusMessage"] for t in stored.secondary_status_transitions]
    assert runner.attempts[0].outcome == "max_runtime"
    assert not process_alive(pid)


def test_a_job_whose_input_is_missing_fails_before_it_runs(tmp_path):
    empty = [{"ChannelName": "training", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": "s3://b/nothing"}}}]
    runner, host = _runner(tmp_path, TRAINS, InputDataConfig=empty)
    runner.start()
    stored = _finished(runner)

    assert stored.training_job_status == "Failed"
    assert 'No S3 objects found under S3 URL "s3://b/nothing"' in stored.failure_reason
    # The instances were up and downloading: billed from TrainingStartTime ("the time when
    # the training job starts on training instances", DescribeTrainingJob), as on AWS.
    assert stored.training_start_time is not None
    assert stored.training_time_in_seconds >= 1
    assert "Training" not in _secondary(stored)
    assert runner.attempts[0].pid is None
    assert not any(key.startswith("out/") for _, _, key in host.objects)


def test_a_closing_host_stops_a_running_job_and_uploads_nothing(tmp_path):
    runner, host = _runner(tmp_path, WAITS)
    runner.start()
    _running(runner, host)
    host.closing = True
    stored = _finished(runner)

    assert stored.training_job_status == "Stopped"
    assert "Uploading" not in _secondary(stored)
    assert not any(key.startswith("out/") for _, _, key in host.objects)


def test_the_runner_sets_only_what_the_stored_job_already_has(tmp_path):
    # A new attribute would break moto's describe response while it iterates the job.
    runner, _ = _runner(tmp_path, TRAINS)
    with pytest.raises(AttributeError, match="no attribute 'invented'"):
        runner._set(invented=1)
    assert "invented" not in vars(runner.stored)
    assert (runner.status, runner.describe()["attempts"]) == ("InProgress", [])
