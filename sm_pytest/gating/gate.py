"""Baseline gating for one session: --sm-baseline NAME compares, --sm-save-baseline NAME
records. The comparison itself lives in baselines.py; this module decides what a run's
comparison means for its item and for the saved baseline, and phrases it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sm_pytest.gating import baselines
from sm_pytest.model import COMPLETED, PASS, GateRow, RunRecord
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.tolerances import guess_direction

# What a compared run's gate amounted to, carried on its record to the controller.
NO_ENTRY = "no-entry"  # the baseline has no entry for the run
UNGATED = "ungated"  # an entry, but no tolerance for any metric it holds: nothing was checked
GATED = "gated"  # at least one metric was checked against its baseline value


@dataclass
class GateOutcome:
    comparisons: list[baselines.Comparison]
    failed: bool
    message: str  # the report for a failing item, or a notice for a passing one
    state: str = GATED

    def rows(self) -> list[GateRow]:
        """The comparisons as the run's record keeps them."""
        return [GateRow(metric=c.metric, verdict=c.verdict, gated=c.gated,
                        baseline=None if c.baseline is None else c.baseline.mean,
                        now=None if c.now is None else c.now.mean, delta=c.delta,
                        allowed=c.allowed, arrow=baselines.delta_arrow(c))
                for c in self.comparisons]


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
            return GateOutcome([], failed, message, NO_ENTRY)
        comparisons = baselines.compare(run.name, finals, entry, run.tolerances)
        if not any(c.gated and c.baseline is not None for c in comparisons):
            # The session-end notice names every such run once; strict fails each of them.
            message = ""
            if self.strict:
                message = (f"{run.name}: compared with baseline {self.name!r}, but no metric"
                           f" is gated; declare a tolerance (tolerances: in its YAML) for"
                           f" {' or '.join(_worth_gating(sorted(entry)))}")
            return GateOutcome(comparisons, self.strict, message, UNGATED)
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
        return GateOutcome(comparisons, failed, message, GATED)


# Speed figures vary with the machine's load: a poor first suggestion for a gate.
_SPEED = ("second", "time", "latency", "throughput")


def _worth_gating(metrics: list[str]) -> list[str]:
    """The metrics to suggest a tolerance for: the quality ones, else the first."""
    return [m for m in metrics if not any(word in m.lower() for word in _SPEED)] or metrics[:1]


def passed_notices(records: list[RunRecord]) -> list[str]:
    """What the gate said about runs that passed (an improvement to record). They travel on
    the records, so pytest-xdist workers' reach the summary too."""
    return [rec.gate_message for rec in records if rec.verdict == PASS and rec.gate_message]


def ungated_notes(gate: Gate | None, records: list[RunRecord]) -> list[str]:
    """The session-end notice of --sm-baseline about runs with nothing gated, if any."""
    if gate is None:
        return []
    notice = ungated_notice(gate.name, records, gate.strict)
    return [notice] if notice else []


def ungated_notice(name: str, records: list[RunRecord], strict: bool) -> str:
    """One notice for every compared run that had no gated metric, with the YAML that gates
    them; empty when there is none. Its first line stands alone (summary.md shows only it)."""
    runs = sorted((rec for rec in records if rec.gate_state == UNGATED),
                  key=lambda rec: rec.name)  # pytest-xdist delivers them in any order
    if not runs:
        return ""
    metrics = sorted({row.metric for rec in runs for row in rec.gate
                      if row.baseline is not None})
    several = len(runs) > 1
    count = f"{len(runs)} compared run{'s' if several else ''}"
    outcome = (f"so {'they' if several else 'it'} failed (--sm-baseline-strict)" if strict
               else "so a regression there passes unnoticed")
    lines = [f"baseline {name!r}: no metric is gated for {count}, {outcome}:"
             f" {', '.join(rec.name for rec in runs)}",
             "Only metrics with a tolerance are gated. Declare them in the experiment file or"
             " its base config, e.g.:", "  tolerances:"]
    for metric in _worth_gating(metrics):
        direction = guess_direction(metric)
        if direction == "lower":  # losses shrink towards 0: a relative drop reads better
            lines.append(f"    {metric}: {{direction: lower, max_drop: '10%'}}")
        elif direction:
            lines.append(f"    {metric}: {{direction: {direction}, max_drop: 0.01}}")
        else:
            lines.append(f"    {metric}: {{direction: higher, max_drop: 0.01}}"
                         "   # or lower, whichever is better")
    lines.append("  sized from the spread of the metric over a few seeds (README, Regression"
                 " gating)" + ("." if strict else "; --sm-baseline-strict fails such runs."))
    return "\n".join(lines)


@dataclass
class Saved:
    path: Path | None  # None: nothing was recorded
    left_out: list[str]  # runs not recorded because their thresholds or gate failed
    kept: list[str]  # those of them whose earlier entry stays in the baseline

    def notes(self, name: str) -> list[str]:
        """What the save did, one line each, for the terminal and summary.md."""
        notes = []
        if self.left_out:
            fresh = [run for run in self.left_out if run not in self.kept]
            parts = [f"{', '.join(self.kept)} (earlier entry kept)"] if self.kept else []
            parts += [f"{', '.join(fresh)} (no entry recorded)"] if fresh else []
            notes.append(f"baseline {name!r}: left out {len(self.left_out)} run(s) whose"
                         f" thresholds or baseline gate failed: {'; '.join(parts)};"
                         " --sm-save-baseline-force records them anyway")
        notes.append(f"baseline {name!r} saved to {self.path}" if self.path else
                     f"baseline {name!r} not saved: no run completed without a failed"
                     " threshold or gate")
        return notes


def regressed(rec: RunRecord) -> bool:
    """Whether a run's own metrics failed: a threshold, or a metric gated against its
    baseline entry. A run failed only by --sm-baseline-strict (it has no entry, or nothing
    gated) measured nothing against the baseline: recording it is how it gets an entry."""
    if any(not check.passed for check in rec.checks):
        return True
    return rec.gate_state == GATED and any(
        row.gated and row.verdict in baselines.FAILING for row in rec.gate)


def save(folder: Path, name: str, records: list[RunRecord], *,
         force: bool = False) -> Saved:
    """Record the final metrics of every run of this session that completed, unless its
    thresholds or its baseline gate failed: recorded, its regression would become the new
    normal, so it is left out (and named) unless `force`. Runs that crashed are never
    recorded."""
    # A reused run is a completed one: the run cache holds only runs that passed.
    completed = [rec for rec in records if rec.status == COMPLETED and rec.repeat_finals]
    left_out = [] if force else sorted(rec.name for rec in completed if regressed(rec))
    results = {rec.name: rec.repeat_finals for rec in completed if rec.name not in left_out}
    kept = []
    if left_out:
        earlier = baselines.load(folder, name)
        kept = [run for run in left_out if earlier and earlier.entry(run) is not None]
    if not results:
        return Saved(None, left_out, kept)
    fingerprints = {rec.name: rec.fingerprint for rec in records
                    if rec.name in results and rec.fingerprint}
    return Saved(baselines.save(folder, name, results, fingerprints=fingerprints), left_out,
                 kept)


def save_session_baseline(folder: Path, name: str, records: list[RunRecord], *, force: bool,
                          cut_short: str | None, write: Callable[[str], None]) -> list[str]:
    """--sm-save-baseline NAME at the end of the session: save, say what was saved on the
    terminal (`write`), and return the notes for summary.md."""
    if cut_short:
        # A refresh is all or nothing: a cancelled one must not rewrite part of the
        # baseline with whichever runs happened to finish first.
        note = (f"baseline {name!r} not saved: {cut_short}; run the whole session"
                " again to refresh it")
        write(note)
        return [note]
    try:
        saved = save(folder, name, records, force=force)
    except baselines.BaselineError as exc:
        write(f"baseline not saved: {exc}")
        return [f"baseline {name!r} not saved: {exc}"]
    notes = saved.notes(name)
    for note in notes:
        write(note)
    return notes
