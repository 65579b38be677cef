"""The emulator package's inner interfaces: the JobHost its job runners use, the RequestHost
of the moto patches, and the staging of a job's files, each tested without running a job."""

from __future__ import annotations

import io
import tarfile

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from emulator_host import ROLE, MemoryHost, job_request, source_archive  # noqa: E402

from sm_pytest.sagemaker.emulator import Emulator, patches  # noqa: E402
from sm_pytest.sagemaker.emulator.job_host import JobHost  # noqa: E402
from sm_pytest.sagemaker.emulator.staging import JobError, JobStaging  # noqa: E402


@pytest.fixture
def host():
    host = MemoryHost()
    host.s3_put("111", "b", "src/sourcedir.tar.gz", source_archive({"train.py": "print(1)"}))
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
    staging = JobStaging(host, "111", "us-east-1", "job-1", job_request())
    tree = staging.prepare_tree(tmp_path / "attempt-1")
    assert (tree.code_dir / "train.py").read_text() == "print(1)"
    assert (tree.channel_dirs["training"] / "x.csv").read_bytes() == b"1,2"
    assert tree.env["SM_HP_EPOCHS"] == "2"
    staging.download_checkpoints(tree)
    assert (tree.checkpoint_dir / "state.json").read_bytes() == b"{}"


def test_staging_puts_back_checkpoints_and_outputs(host, tmp_path):
    staging = JobStaging(host, "111", "us-east-1", "job-1", job_request())
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
    no_script = job_request(HyperParameters={"epochs": "2"})
    with pytest.raises(JobError, match="script mode only") as refused:
        JobStaging(host, "111", "us-east-1", "job-1", no_script).prepare_tree(tmp_path / "a")
    assert refused.value.container
    empty = job_request(InputDataConfig=[{"ChannelName": "training", "DataSource": {
        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/nothing"}}}])
    with pytest.raises(JobError, match='No S3 objects found under S3 URL "s3://b/nothing"'
                       ) as missing:
        JobStaging(host, "111", "us-east-1", "job-1", empty).prepare_tree(tmp_path / "b")
    assert not missing.value.container
    assert ROLE in missing.value.reason
    piped = job_request(InputDataConfig=[{"ChannelName": "training", "InputMode": "Pipe",
                                       "DataSource": {"S3DataSource": {
                                           "S3Uri": "s3://b/data/train"}}}])
    with pytest.raises(JobError, match="input mode Pipe is not emulated"):
        JobStaging(host, "111", "us-east-1", "job-1", piped).prepare_tree(tmp_path / "c")


def test_checkpoint_sync_mirrors_deletions_and_rewrites_that_keep_the_mtime(host, tmp_path):
    import os

    host.s3_put("111", "b", "ckpt/old.json", b"old")
    host.s3_put("111", "b", "ckpt-other/old.json", b"not this job's prefix")
    staging = JobStaging(host, "111", "us-east-1", "job-1", job_request())
    tree = staging.prepare_tree(tmp_path / "attempt-1")
    staging.download_checkpoints(tree)
    (tree.checkpoint_dir / "old.json").unlink()  # deleted in the container
    state = tree.checkpoint_dir / "state.json"
    st = state.stat()
    state.write_text("{1")  # same size ("{}" restored) and, below, the same mtime
    os.utime(state, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (state.stat().st_size, state.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    staging.sync_checkpoints_up(tree)
    assert host.s3_get("111", "b", "ckpt/state.json") == b"{1"
    assert ("111", "b", "ckpt/old.json") not in host.objects
    assert host.s3_get("111", "b", "ckpt-other/old.json") == b"not this job's prefix"

    # A file this job wrote at one sync and deleted before the next goes too; one left alone
    # since the last sync is not sent again (another host's newer copy would lose to it).
    (tree.checkpoint_dir / "epoch-1.json").write_text("1")
    staging.sync_checkpoints_up(tree)
    assert host.s3_get("111", "b", "ckpt/epoch-1.json") == b"1"
    host.s3_put("111", "b", "ckpt/state.json", b"newer, from another host")
    (tree.checkpoint_dir / "epoch-1.json").unlink()
    staging.sync_checkpoints_up(tree)
    assert ("111", "b", "ckpt/epoch-1.json") not in host.objects
    assert host.s3_get("111", "b", "ckpt/state.json") == b"newer, from another host"


def test_a_checkpoint_one_host_deleted_stays_while_another_has_it(host, tmp_path):
    two = job_request(ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2})
    host.s3_put("111", "b", "ckpt/both.json", b"b")
    staging = JobStaging(host, "111", "us-east-1", "job-1", two)
    (_, first), (_, second) = staging.prepare_trees(tmp_path / "attempt-1")
    for tree in (first, second):
        staging.download_checkpoints(tree)
    (first.checkpoint_dir / "state.json").unlink()  # algo-2 keeps its copy
    for tree in (first, second):
        (tree.checkpoint_dir / "both.json").unlink()
    for tree in (first, second):
        staging.sync_checkpoints_up(tree)
    assert host.s3_get("111", "b", "ckpt/state.json") == b"{}"
    assert ("111", "b", "ckpt/both.json") not in host.objects
