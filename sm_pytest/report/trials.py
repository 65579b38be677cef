"""The trials of a search (`tune:`), as a failed item's report lists them: each trial's
point, objective and status, the best one marked."""

from __future__ import annotations

from collections.abc import Sequence

from sm_pytest.model import TrialSource, best_trial_number
from sm_pytest.spec.experiment_file import RunSpec


def trials_report(run: RunSpec, trials: Sequence[TrialSource]) -> str:
    tune = run.tune
    best = best_trial_number(trials, tune)
    names = [r.name for r in tune.ranges]
    header = ["trial", "status", "objective", *names]
    rows = [header]
    for trial in trials:
        if trial.result is None:
            continue
        status = "stopped early" if trial.stopped_early else trial.result.status
        objective = "-" if trial.objective is None else f"{trial.objective:.6g}"
        rows.append([f"{trial.number}{' *' if trial.number == best else ''}", status,
                     objective, *(_shown(trial.values.get(name)) for name in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    summary = (f"best: trial {best}" if best is not None
               else "no trial completed with a value of the objective")
    return (f"{len(rows) - 1} trials of {run.name} ({tune.strategy}, {tune.objective_type}"
            f" {tune.objective_metric}; {summary}):\n" + "\n".join(f"  {line}" for line in lines))


def _shown(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
