"""An in-memory JobHost and the pieces of a tiny job, shared by the tests of the emulator's
job runner and its staging: a runner can be driven without moto's S3 and Logs."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

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

    def s3_delete(self, account, bucket, key):
        self.objects.pop((account, bucket, key), None)

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


def source_archive(files: dict[str, str]) -> bytes:
    """sourcedir.tar.gz holding ``files`` (name -> text)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def job_request(**overrides) -> dict:
    """A CreateTrainingJob request for script mode: train.py from s3://b/src, one channel
    from s3://b/data/train, outputs to s3://b/out and checkpoints in s3://b/ckpt."""
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
