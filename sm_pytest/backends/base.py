"""The one small interface every backend implements, and what a run gives back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..spec import RunSpec

COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed_out"
STOPPED = "stopped"
# The session was interrupted (Ctrl-C, SIGTERM, SIGHUP) while a local run was in flight.
INTERRUPTED = "interrupted"


@dataclass
class RunResult:
    status: str  # one of COMPLETED, FAILED, TIMED_OUT, STOPPED, INTERRUPTED
    artifact_dir: Path
    log_path: Path
    model_dir: Path
    final_metrics: dict[str, float] = field(default_factory=dict)
    metric_series: dict[str, list[float]] = field(default_factory=dict)
    failure_reason: str = ""
    exit_code: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    backend: str = "local"
    instance_type: str = "local"
    job_name: str = ""
    billable_seconds: float | None = None
    training_seconds: float | None = None
    spot: bool = False

    @property
    def spot_saving(self) -> float | None:
        """1 - billable / training time, SageMaker's own measure of what spot saved."""
        if not self.spot or not self.billable_seconds or not self.training_seconds:
            return None
        return 1.0 - self.billable_seconds / self.training_seconds

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = self.duration_s
        data["spot_saving"] = self.spot_saving
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


class RunSetupError(Exception):
    """The run could not be started; phrased for the user."""


class RunInterrupted(KeyboardInterrupt):
    """The session was interrupted while a run was in flight. It carries what the run left
    (an INTERRUPTED result over its log so far) so that the result is saved and recorded on
    the way out; being a KeyboardInterrupt, it still takes pytest's interrupted path."""

    def __init__(self, result: RunResult, results: list[RunResult] | None = None, *,
                 message: str = ""):
        super().__init__(message or result.failure_reason)
        self.result = result
        # With `repeat`: every result of the item so far, this one last (set by the session).
        self.results = list(results) if results is not None else [result]


def interrupted_reason(exc: BaseException) -> str:
    """`exc` is the KeyboardInterrupt: signals.py names the signal in it, Ctrl-C does not."""
    return (f"the session was interrupted ({str(exc) or 'Ctrl-C'}) and the run was stopped;"
            " train.log holds its log up to then")


def never_ran(reason: str, folder: Path, backend: str) -> RunResult:
    """A run that failed before its program started (a local input on S3, a value the
    fingerprint cannot hash): still a row in the summary, with the reason."""
    return RunResult(status=FAILED, artifact_dir=folder, log_path=folder / "train.log",
                     model_dir=folder / "model", failure_reason=reason, backend=backend,
                     instance_type="" if backend != "local" else "local")


def finals_per_metric(results: list[RunResult]) -> dict[str, list[float]]:
    """metric -> the final value of each run (each repeat) that produced it."""
    finals: dict[str, list[float]] = {}
    for result in results:
        for metric, value in result.final_metrics.items():
            finals.setdefault(metric, []).append(value)
    return finals


class Handle(Protocol):
    """Whatever a backend needs to wait for or stop one submitted run."""


class Backend(Protocol):
    name: str

    def submit(self, run: RunSpec, attempt_dir: Path) -> Handle: ...

    def wait(self, handle: Handle) -> RunResult: ...

    def stop(self, handle: Handle) -> None: ...
