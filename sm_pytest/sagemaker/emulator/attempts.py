"""The records of one emulated training job's runs: its attempts, how each ended, the armed
spot interruption, and what a failed attempt says in FailureReason.

    from sm_pytest.sagemaker.emulator.attempts import Attempt, SpotArm, algorithm_error

The job runner (:mod:`sm_pytest.sagemaker.emulator.jobs`) makes one :class:`Attempt` per run
of the program (the first, and one more after each spot interruption) and ends each with one
of the outcomes below; the Emulator keeps the :class:`SpotArm` of ``interrupt_spot`` until a
matching job takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sm_pytest.run.contract import ContainerTree
from sm_pytest.run.host_failure import also_failed
from sm_pytest.sagemaker.emulator.hosts import HostRun

__all__ = ["EXITED", "INTERRUPTED", "MAX_RUNTIME", "MAX_WAIT", "STOPPED", "Attempt", "SpotArm",
           "algorithm_error", "failure_text"]

# Terminal outcomes of one attempt (the process run).
EXITED, STOPPED, MAX_RUNTIME, MAX_WAIT, INTERRUPTED = (
    "exited",
    "stopped",
    "max_runtime",
    "max_wait",
    "interrupted",
)


@dataclass
class SpotArm:
    """One armed spot interruption (Emulator.interrupt_spot)."""

    pattern: str
    after_checkpoint: bool = True
    after_seconds: float = 0.0

    def matches(self, job_name: str) -> bool:
        return job_name == self.pattern or job_name.startswith(self.pattern)


@dataclass
class Attempt:
    """One run of the program: the first, or a restart after a spot interruption."""

    number: int
    root: Path
    #: The first host's tree, stream, process and lines (the only host of a 1-instance job).
    tree: ContainerTree | None = None
    log_stream: str | None = None
    pid: int | None = None
    returncode: int | None = None
    outcome: str | None = None
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Every host of the attempt, in host-list order (emulator/hosts.py).
    hosts: list[HostRun] = field(default_factory=list)
    #: The host whose failure failed the attempt (run/host_failure.py: the first failure
    #: file written, else the first seen to fail), if any.
    failed_host: HostRun | None = None
    #: The other hosts that failed by themselves, in blame order.
    also_failed: list[HostRun] = field(default_factory=list)


def failure_text(host: HostRun) -> str:
    """A host's failure file, else its exit code."""
    if host.tree is not None and host.tree.failure_file.is_file():
        text = host.tree.failure_file.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text
    return f"exit code {host.returncode}"


def algorithm_error(attempt: Attempt | None) -> str:
    """The FailureReason of a job whose program failed: ``AlgorithmError: <the failure
    file>, exit code: 1``, naming the failed host (and the others that failed) when the job
    has more than one."""
    text = ""
    failed = attempt.failed_host if attempt is not None else None
    tree = failed.tree if failed is not None else (attempt.tree if attempt else None)
    if tree is not None:
        failure = tree.failure_file
        if failure.is_file():
            text = failure.read_text(encoding="utf-8", errors="replace").strip()
    if failed is not None and len(attempt.hosts) > 1:
        text = f"{failed.name}: {text}"  # which of the job's hosts it was
        text += also_failed([(h.name, failure_text(h)) for h in attempt.also_failed])
    return f"AlgorithmError: {text}, exit code: 1"
