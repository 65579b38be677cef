"""The session's pictures: a learning curve per run and, for every matrix experiment, each
checked metric against each swept parameter. Drawn by plots.py (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sm_pytest.report import plots
from sm_pytest.run.artifacts import folder_name


def draw(records: list[dict[str, Any]], root: Path) -> list[Path]:
    drawn: list[Path] = []
    for rec in records:
        if rec["metric_series"] and not rec["cached"]:
            path = Path(rec["artifact_dir"]) / "learning_curve.png"
            drawn.append(plots.learning_curve(rec["metric_series"], path, rec["name"]))
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec["swept"]:
            by_experiment.setdefault(rec["experiment"], []).append(rec)
    for experiment, recs in sorted(by_experiment.items()):
        params = list(dict.fromkeys(p for rec in recs for p in rec["swept"]))
        metrics = list(dict.fromkeys(c["metric"] for rec in recs for c in rec["checks"]))
        metrics += [g["metric"] for rec in recs for g in rec["gate"]
                    if g["gated"] and g["metric"] not in metrics]
        rows = [{**rec["swept"], **rec["final_metrics"]} for rec in recs]
        for metric in dict.fromkeys(metrics):
            for param in params:
                name = folder_name(f"{experiment}-{metric}-vs-{param}") + ".png"
                others = [p for p in params if p != param]
                drawn.append(plots.sweep_plot(rows, param, metric, root / "plots" / name,
                                              f"{experiment}: {metric} vs {param}",
                                              others=others))
    return drawn
