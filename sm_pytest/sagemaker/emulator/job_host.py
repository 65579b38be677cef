"""The interface between the emulator and its job runners: what a running job may ask of
the Emulator that runs it.

    from sm_pytest.sagemaker.emulator.job_host import JobHost

A :class:`~sm_pytest.sagemaker.emulator.jobs.JobRunner` receives its host in its
constructor and uses nothing else of it: emulated S3 and CloudWatch Logs as the job's
account, the lock that guards moto's stored jobs, and the emulator's settings. The
:class:`~sm_pytest.sagemaker.emulator.service.Emulator` implements it; so can a test double.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["JobHost"]


@runtime_checkable
class JobHost(Protocol):
    """What a job runner needs of the emulator that runs it."""

    #: Held while a stored job is read or changed: a describe response never mixes two
    #: states of a job. Reentrant.
    lock: AbstractContextManager[Any]
    #: Seconds between SIGTERM and SIGKILL when a job is stopped or runs out of time.
    stop_grace_seconds: float
    #: For managed spot jobs, the share of the training time that is not billed.
    spot_saving: float
    #: How often a running job's output goes to CloudWatch Logs.
    log_flush_seconds: float
    #: The interpreter that runs the programs (None: this one).
    python: str | None

    @property
    def closing(self) -> bool:
        """The emulator is shutting down: jobs stop, and upload nothing."""
        ...

    def capacity_withheld(self, job_name: str) -> bool:
        """No spot capacity ever comes for this job (Emulator.withhold_spot_capacity)."""
        ...

    def s3_get(self, account: str, bucket: str, key: str) -> bytes:
        """The object's bytes."""
        ...

    def s3_put(self, account: str, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` as the object."""
        ...

    def s3_download_prefix(self, account: str, bucket: str, prefix: str, dest: Path) -> int:
        """Download every object under ``prefix`` into ``dest``; how many there were."""
        ...

    def s3_delete(self, account: str, bucket: str, key: str) -> None:
        """Delete the object (no error when there is none, as S3's DeleteObject)."""
        ...

    def new_log_stream(self, account: str, job_name: str, host: str = "algo-1") -> str:
        """A new log stream for one host (``algo-<n>``) of one attempt of the job, created;
        its name. Called with ``host`` only for a multi-instance job."""
        ...

    def put_log_events(self, account: str, stream: str, events: list[dict[str, Any]]
                       ) -> None:
        """Append the events (``timestamp``, ``message``) to the stream."""
        ...
