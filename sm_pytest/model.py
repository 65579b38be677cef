"""The records that pass between the layers: what a run gave back (RunResult and its
statuses), and the per-run record that the tracker, the summary and the gate read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.spec.experiment import RunSpec
from sm_pytest.spec.thresholds import Verdict

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


def build(run: RunSpec, order: int, result: RunResult, verdict: str,
          verdicts: list[Verdict], *, pending=None, results=None, gate=None) -> dict[str, Any]:
    pending = pending or []
    results = results or []  # none when the run never started: its repeats have no result
    repeats = [{"fingerprint": p.fingerprint, "parts": p.parts, "cache_name": p.cache_name,
                "cached": p.cached is not None, "miss": p.miss,
                "result_path": str(r.artifact_dir / "result.json"),
                "hyperparameters": p.run.hyperparameters, **_run_fields(r)}
               for p, r in zip(pending, results, strict=False)]
    cached = bool(repeats) and all(r["cached"] for r in repeats)
    return {
        "experiment": run.experiment,
        "description": run.description,
        "path": str(run.path),
        "run_id": run.run_id,
        "name": run.name,
        "order": order,
        "hyperparameters": run.hyperparameters,
        "swept": run.swept,
        "cached": cached,
        "repeats": repeats,
        "repeat_finals": finals_per_metric(results or [result]),
        "fingerprint": repeats[0]["fingerprint"] if repeats else "",
        "gate": gate.as_records() if gate is not None else [],
        "gate_message": gate.message if gate is not None else "",
        "gate_state": gate.state if gate is not None else "",
        "verdict": verdict,
        "checks": [{"metric": v.threshold.metric, "threshold": v.threshold.text,
                    "actual": v.actual, "passed": v.passed} for v in verdicts],
        **_run_fields(result),
        "status": "cached" if cached else result.status,
    }


def _run_fields(result: RunResult) -> dict[str, Any]:
    """What one training run gave: the item's (aggregated) result, or one repeat's."""
    return {
        "status": result.status,
        "final_metrics": result.final_metrics,
        "metric_series": result.metric_series,
        "failure_reason": result.failure_reason,
        "backend": result.backend,
        "instance_type": result.instance_type,
        "job_name": result.job_name,
        "billable_seconds": result.billable_seconds,
        "spot_saving": result.spot_saving,
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        "duration_s": result.duration_s,
        "artifact_dir": str(result.artifact_dir),
        "log_path": str(result.log_path),
        "model_dir": str(result.model_dir),
    }


def junit_properties(rec: dict[str, Any]) -> list[tuple[str, str]]:
    props = [("sm.status", rec["status"]), ("sm.verdict", rec["verdict"]),
             ("sm.artifacts", rec["artifact_dir"]), ("sm.duration_s", f"{rec['duration_s']:.2f}")]
    props += [(f"sm.metric.{name}", repr(value)) for name, value in rec["final_metrics"].items()]
    for row in rec["gate"]:
        if row["gated"]:
            props.append((f"sm.baseline.{row['metric']}", f"{row['baseline']!r}"))
            props.append((f"sm.delta.{row['metric']}", f"{row['delta']!r}"))
            props.append((f"sm.gate.{row['metric']}", row["verdict"]))
    for check in rec["checks"]:
        outcome = "pass" if check["passed"] else "fail"
        props.append((f"sm.check.{check['metric']}", f"{check['threshold']} -> {outcome}"))
    return props
