"""The junit XML properties of one run (pytest's --junitxml), from its record."""

from __future__ import annotations

from sm_pytest.model import RunRecord


def junit_properties(rec: RunRecord) -> list[tuple[str, str]]:
    props = [("sm.status", rec.shown_status), ("sm.verdict", rec.verdict),
             ("sm.artifacts", rec.artifact_dir), ("sm.duration_s", f"{rec.duration_s:.2f}")]
    props += [(f"sm.metric.{name}", repr(value)) for name, value in rec.final_metrics.items()]
    for row in rec.gate:
        if row.gated:
            props.append((f"sm.baseline.{row.metric}", f"{row.baseline!r}"))
            props.append((f"sm.delta.{row.metric}", f"{row.delta!r}"))
            props.append((f"sm.gate.{row.metric}", row.verdict))
    for check in rec.checks:
        outcome = "pass" if check.passed else "fail"
        props.append((f"sm.check.{check.metric}", f"{check.threshold} -> {outcome}"))
    if rec.trials:  # a search: its metrics above are its best trial's
        best = next((t for t in rec.trials if t.best), None)
        props.append(("sm.trials", str(len(rec.trials))))
        if best is not None:
            props.append(("sm.best_trial", str(best.number)))
            props += [(f"sm.best.{name}", repr(value)) for name, value in best.values.items()]
    return props
