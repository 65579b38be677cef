"""The Emulator's own boto3 clients of the emulated S3, CloudWatch Logs and SageMaker, each
call made as a given account: what the job runners' S3 and log calls go through.

    from sm_pytest.sagemaker.emulator.aws_clients import AccountClients

    clients = AccountClients(emulator.client)   # after mock_aws() started
    clients.s3_put("111122223333", "bucket", "key", b"data")
    with clients.as_account("111122223333"):
        clients.sagemaker.describe_training_job(TrainingJobName="job")

An account is moto's ``x-moto-account-id`` header, added to each request signed inside
:meth:`AccountClients.as_account` (per thread). The clients retry throttling (botocore
standard mode, 3 attempts), as the service retries its own calls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.config import Config

from sm_pytest.sagemaker.cloudwatch import LOG_GROUP
from sm_pytest.sagemaker.emulator.staging import relative_key

__all__ = ["AccountClients"]


class AccountClients:
    """S3, CloudWatch Logs and SageMaker clients made by ``client(service, config=...)``
    (the Emulator's), whose calls go out as the account of :meth:`as_account`."""

    def __init__(self, client: Callable[..., Any]):
        internal = Config(retries={"max_attempts": 3, "mode": "standard"})
        self.s3 = client("s3", config=internal)
        self.logs = client("logs", config=internal)
        self.sagemaker = client("sagemaker", config=internal)
        self._tls = threading.local()
        self._streams_lock = threading.Lock()
        self._streams: set[str] = set()
        self._groups: set[str] = set()
        for each in (self.s3, self.logs, self.sagemaker):
            each.meta.events.register("before-sign", self._add_account_header)

    def _add_account_header(self, request: Any, **_: Any) -> None:
        account = getattr(self._tls, "account", None)
        if account:
            request.headers["x-moto-account-id"] = account

    @contextlib.contextmanager
    def as_account(self, account: str) -> Iterator[None]:
        """Calls made in this thread meanwhile go out as ``account``."""
        previous = getattr(self._tls, "account", None)
        self._tls.account = account
        try:
            yield
        finally:
            self._tls.account = previous

    def s3_get(self, account: str, bucket: str, key: str) -> bytes:
        """The object's bytes, read as ``account``."""
        with self.as_account(account):
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def s3_put(self, account: str, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` as the object, as ``account``."""
        with self.as_account(account):
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def s3_delete(self, account: str, bucket: str, key: str) -> None:
        """Delete the object, as ``account``."""
        with self.as_account(account):
            self.s3.delete_object(Bucket=bucket, Key=key)

    def s3_download_prefix(self, account: str, bucket: str, prefix: str, dest: Path) -> int:
        """Download every object under ``prefix`` into ``dest`` (see relative_key)."""
        count = 0
        dest.mkdir(parents=True, exist_ok=True)
        with self.as_account(account):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue
                    target = dest.joinpath(*relative_key(prefix, key).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    target.write_bytes(body)
                    count += 1
        return count

    def new_log_stream(self, account: str, job_name: str, host: str = "algo-1") -> str:
        """A new stream ``<job>/<host>-<epoch seconds>`` (a later second if that one is
        taken: one stream per instance per attempt), as SageMaker names them
        ("algo-n-1234567890", model-parallel-best-practices.md)."""
        with self._streams_lock, self.as_account(account):
            stamp = int(time.time())
            while f"{account}:{job_name}/{host}-{stamp}" in self._streams:
                stamp += 1
            stream = f"{job_name}/{host}-{stamp}"
            self._streams.add(f"{account}:{stream}")
            if account not in self._groups:
                with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
                    self.logs.create_log_group(logGroupName=LOG_GROUP)
                self._groups.add(account)
            self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        return stream

    def put_log_events(self, account: str, stream: str, events: list[dict[str, Any]]) -> None:
        """Append the events (``timestamp``, ``message``) to the stream, as ``account``."""
        with self.as_account(account):
            self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                     logEvents=events)
