"""The per-run record: a JSON-able dict that travels from pytest-xdist workers to the
controller on the test report, and feeds the tracker and the summary."""

from __future__ import annotations

from typing import Any

from .backends.base import RunResult, finals_per_metric
from .spec import RunSpec
from .thresholds import Verdict


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
