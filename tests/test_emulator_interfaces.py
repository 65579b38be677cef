"""The emulator package's inner interfaces: the JobHost its job runners use, the RequestHost
of the moto patches, and the staging of a job's files, each tested without running a job."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from sm_pytest.sagemaker.emulator import Emulator, patches  # noqa: E402
from sm_pytest.sagemaker.emulator.job_host import JobHost  # noqa: E402
from sm_pytest.sagemaker.emulator.staging import JobError, JobStaging  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/test"


class MemoryHost:
    """A JobHost over a dict of objects: what a job runner may ask, and nothing else."""

    def __init__(self):
        self.lock = threading.RLock()
        self.stop_grace_seconds = 0.1
        self.spot_saving = 0.3
        self.log_flush_seconds = 0.1
        self.python = None
        self.closing = False
        self.objects: dict[tuple[str, str, str], bytes] = {}  # (account, bucket, key)
        self.streams: dict[str, list[dict]] = {}

    def capacity_withheld(self, job_name: str) -> bool:
        return False

    def s3_get(self, account, bucket, key):
        return self.objects[(account, bucket, key)]

    def s3_put(self, account, bucket, key, data):
        self.objects[(account, bucket, key)] = data

    def s3_download_prefix(self, account, bucket, prefix, dest: Path) -> int:
        from sm_pytest.sagemaker.emulator.staging import relative_key

        count = 0
        for (owner, where, key), data in sorted(self.objects.items()):
            if (owner, where) == (account, bucket) and key.startswith(prefix):
                target = dest.joinpath(*relative_key(prefix, key).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                count += 1
        dest.mkdir(parents=True, exist_ok=True)
        return count

    def new_log_stream(self, account, job_name):
        stream = f"{job_name}/algo-1-{len(self.streams)}"
        self.streams[stream] = []
        return stream

    def put_log_events(self, account, stream, events):
        self.streams[stream] += events


def _source_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _request(**overrides) -> dict:
    request = {
        "TrainingJobName": "job-1",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps("s3://b/src/sourcedir.tar.gz"),
            "epochs": "2",
        },
        "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://b/data/train"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CheckpointConfig": {"S3Uri": "s3://b/ckpt"},
    }
    request.update(overrides)
    return request


@pytest.fixture
def host():
    host = MemoryHost()
    host.s3_put("111", "b", "src/sourcedir.tar.gz", _source_archive({"train.py": "print(1)"}))
    host.s3_put("111", "b", "data/train/x.csv", b"1,2")
    host.s3_put("111", "b", "ckpt/state.json", b"{}")
    return host


def test_the_emulator_is_a_job_host():
    assert isinstance(Emulator(), JobHost)
    assert isinstance(MemoryHost(), JobHost)


def test_the_emulator_is_a_request_host():
    emulator = Emulator()
    for member in ("lock", "jobs", "record_call", "record_refusal", "start_job"):
        assert hasattr(emulator, member), member
    emulator.throttle("CreateTrainingJob", code="ResourceLimitExceeded", message="no")
    assert emulator.record_call("CreateTrainingJob") == ("ResourceLimitExceeded", "no")
    assert emulator.record_call("CreateTrainingJob") is None
    emulator.record_refusal("CreateBucket", "bad name")
    assert emulator.calls == ["CreateTrainingJob", "CreateTrainingJob"]
    assert emulator.injected == [("CreateTrainingJob", "ResourceLimitExceeded")]
    assert emulator.refused == [("CreateBucket", "bad name")]


def test_patches_answer_to_the_active_host_only_and_come_off():
    from moto.sagemaker.responses import SageMakerResponse

    original = SageMakerResponse.__dict__["create_training_job"]
    host = Emulator()
    assert patches.active() is None
    patches.activate(host)
    try:
        assert patches.active() is host
        patches.install()
        assert SageMakerResponse.__dict__["create_training_job"] is not original
        assert hasattr(SageMakerResponse, "stop_training_job")
    finally:
        patches.uninstall()
        patches.deactivate(host)
    assert patches.active() is None
    assert SageMakerResponse.__dict__["create_training_job"] is original
    assert not hasattr(SageMakerResponse, "stop_training_job")
    patches.deactivate(Emulator())  # not the active one: nothing to undo


def test_staging_lays_out_the_tree_from_s3(host, tmp_path):
    staging = JobStaging(host, "111", "us-east-1", "job-1", _request())
    tree = staging.prepare_tree(tmp_path / "attempt-1")
    assert (tree.code_dir / "train.py").read_text() == "print(1)"
    assert (tree.channel_dirs["training"] / "x.csv").read_bytes() == b"1,2"
    assert tree.env["SM_HP_EPOCHS"] == "2"
    staging.download_checkpoints(tree)
    assert (tree.checkpoint_dir / "state.json").read_bytes() == b"{}"


def test_staging_puts_back_checkpoints_and_outputs(host, tmp_path):
    staging = JobStaging(host, "111", "us-east-1", "job-1", _request())
    tree = staging.prepare_tree(tmp_path / "attempt-1")
    (tree.checkpoint_dir / "epoch-2.json").write_text("2")
    staging.sync_checkpoints_up(tree)
    assert host.s3_get("111", "b", "ckpt/epoch-2.json") == b"2"

    upload = tmp_path / "attempt-1" / "upload"
    # A failed job with an empty model dir leaves no model.tar.gz; one that did not fail does.
    assert staging.upload_model(tree, upload, "Failed") is None
    assert ("111", "b", "out/job-1/output/model.tar.gz") not in host.objects
    (tree.model_dir / "model.txt").write_text("weights")
    assert staging.upload_model(tree, upload, "Completed") == (
        "s3://b/out/job-1/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(host.s3_get(
            "111", "b", "out/job-1/output/model.tar.gz"))) as tar:
        assert tar.getnames() == ["model.txt"]
    staging.upload_output_data(tree, upload)
    assert ("111", "b", "out/job-1/output/output.tar.gz") not in host.objects
    (tree.output_data_dir / "report.txt").write_text("done")
    staging.upload_output_data(tree, upload)
    assert ("111", "b", "out/job-1/output/output.tar.gz") in host.objects


def test_staging_refuses_what_sagemaker_refuses(host, tmp_path):
    no_script = _request(HyperParameters={"epochs": "2"})
    with pytest.raises(JobError, match="script mode only") as refused:
        JobStaging(host, "111", "us-east-1", "job-1", no_script).prepare_tree(tmp_path / "a")
    assert refused.value.container
    empty = _request(InputDataConfig=[{"ChannelName": "training", "DataSource": {
        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/nothing"}}}])
    with pytest.raises(JobError, match='No S3 objects found under S3 URL "s3://b/nothing"'
                       ) as missing:
        JobStaging(host, "111", "us-east-1", "job-1", empty).prepare_tree(tmp_path / "b")
    assert not missing.value.container
    assert ROLE in missing.value.reason
    piped = _request(InputDataConfig=[{"ChannelName": "training", "InputMode": "Pipe",
                                       "DataSource": {"S3DataSource": {
                                           "S3Uri": "s3://b/data/train"}}}])
    with pytest.raises(JobError, match="input mode Pipe is not emulated"):
        JobStaging(host, "111", "us-east-1", "job-1", piped).prepare_tree(tmp_path / "c")
