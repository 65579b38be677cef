"""The end-of-session table: one pandas row per run, printed and written as CSV/Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import write_text_atomic

_LEADING = ["experiment", "run", "status", "verdict"]
_TRAILING = ["duration_s", "artifacts"]
# Shown only when a run went to SageMaker.
_JOB_COLUMNS = ["job", "instance", "billable_s", "spot_saving"]


def frame(records: list[dict[str, Any]]):
    """Build the summary DataFrame; columns: experiment, run, status, verdict, the swept
    hyperparameters, the final metrics, duration and the artifact folder."""
    import pandas as pd

    records = sorted(records, key=lambda r: (r["experiment"], r["order"]))
    swept = _union(r["swept"] for r in records)
    metrics = _union(r["final_metrics"] for r in records)
    rows = []
    for rec in records:
        row = {"experiment": rec["experiment"], "run": rec["run_id"] or "-",
               "status": rec["status"], "verdict": rec["verdict"]}
        row.update({name: rec["swept"].get(name) for name in swept})
        row.update({name: rec["final_metrics"].get(name) for name in metrics})
        row["duration_s"] = round(rec["duration_s"], 1)
        row["artifacts"] = rec["artifact_dir"]
        row.update(job=rec["job_name"], instance=rec["instance_type"],
                   billable_s=rec.get("billable_seconds"), spot_saving=rec.get("spot_saving"))
        rows.append(row)
    on_sagemaker = any(rec["backend"] == "sagemaker" for rec in records)
    columns = _LEADING + [s for s in swept if s not in _LEADING] + [
        m for m in metrics if m not in swept and m not in _LEADING] + _TRAILING[:1] + (
        _JOB_COLUMNS if on_sagemaker else []) + _TRAILING[1:]
    df = pd.DataFrame(rows, columns=columns)
    for column in ("billable_s", "spot_saving"):
        if column in df:
            df[column] = pd.to_numeric(df[column])  # None -> NaN, shown blank
    return df


def _union(dicts) -> list[str]:
    names: dict[str, None] = {}
    for d in dicts:
        names.update(dict.fromkeys(d))
    return list(names)


def render_text(df) -> str:
    # The artifact path is long and printed below the table; keep the table readable.
    table = df.drop(columns=["artifacts"])
    return table.to_string(index=False, na_rep="", float_format="{:.4g}".format)


def write(df, directory: Path) -> tuple[Path, Path]:
    csv_path, md_path = directory / "summary.csv", directory / "summary.md"
    write_text_atomic(csv_path, df.to_csv(index=False))
    passed = int((df["verdict"] == "pass").sum())
    markdown = (f"# sm-pytest summary\n\n{passed} of {len(df)} runs passed.\n\n"
                + df.to_markdown(index=False, floatfmt=".4g") + "\n")
    write_text_atomic(md_path, markdown)
    return csv_path, md_path
