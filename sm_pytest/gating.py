"""Baseline gating for one session: --sm-baseline NAME compares, --sm-save-baseline NAME
records. The comparison itself lives in baselines.py; this module decides what a run's
comparison means for its item and phrases it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import baselines
from .backends.base import COMPLETED
from .spec import RunSpec


@dataclass
class GateOutcome:
    comparisons: list[baselines.Comparison]
    failed: bool
    message: str  # the report for a failing item, or a notice for a passing one

    def as_records(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.comparisons:
            rows.append({
                "metric": c.metric, "verdict": c.verdict, "gated": c.gated,
                "baseline": None if c.baseline is None else c.baseline.mean,
                "now": None if c.now is None else c.now.mean,
                "delta": c.delta, "allowed": c.allowed, "arrow": baselines.delta_arrow(c)})
        return rows


class Gate:
    def __init__(self, folder: Path, compare_with: str | None, strict: bool):
        self.name = compare_with
        self.strict = strict
        # Loaded once, before anything runs: a broken file is one clear error up front.
        self.baseline = baselines.load(folder, compare_with) if compare_with else None
        if compare_with and self.baseline is None:
            raise baselines.BaselineError(
                f"{baselines.baseline_path(folder, compare_with)} does not exist; record it"
                f" first with --sm-save-baseline {compare_with}")

    def judge(self, run: RunSpec, finals: dict[str, list[float]]) -> GateOutcome:
        entry = self.baseline.entry(run.name) if self.baseline else None
        if entry is None:
            failed = self.strict
            message = (f"{run.name}: no entry in baseline {self.name!r}"
                       f" ({self.baseline.path}); record one with --sm-save-baseline"
                       f" {self.name}")
            return GateOutcome([], failed, message)
        comparisons = baselines.compare(run.name, finals, entry, run.tolerances)
        failed = baselines.failed(comparisons)
        table = baselines.format_table(comparisons)
        improved = [c.metric for c in comparisons if c.verdict == "improved"]
        if failed:
            message = (f"{run.name}: worse than baseline {self.name!r} beyond tolerance\n"
                       f"{table}")
        elif improved:
            message = (f"{run.name}: {', '.join(improved)} improved beyond tolerance; refresh"
                       f" the baseline with --sm-save-baseline {self.name}")
        else:
            message = ""
        return GateOutcome(comparisons, failed, message)




def save(folder: Path, name: str, records: list[dict[str, Any]]) -> Path | None:
    """Record the final metrics of every run of this session that completed."""
    results = {rec["name"]: rec["repeat_finals"] for rec in records
               if rec["status"] in (COMPLETED, "cached") and rec["repeat_finals"]}
    if not results:
        return None
    fingerprints = {rec["name"]: rec["fingerprint"] for rec in records
                    if rec["name"] in results and rec.get("fingerprint")}
    return baselines.save(folder, name, results, fingerprints=fingerprints)
