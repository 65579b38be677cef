"""The end-of-session table: one pandas row per run, printed and written as CSV/Markdown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sm_pytest.model import CACHED, PASS, RunRecord
from sm_pytest.report.pools import shown as pool_shown
from sm_pytest.run.artifacts import write_text_atomic

_LEADING = ["experiment", "run", "status", "verdict"]
_TRAILING = ["duration_s", "artifacts"]
# Shown only when a run went to SageMaker.
_JOB_COLUMNS = ["job", "instance", "billable_s", "spot_saving"]
# Shown only when a job asked for a warm pool: its start (creation to training, and whether on
# a reused pool: whose), what became of its own pool, and the idle time that pool billed.
_POOL_COLUMNS = ["start_s", "pool", "pool_after", "idle_s"]


def frame(records: list[RunRecord]):
    """Build the summary DataFrame; columns: experiment, run, status, verdict, the swept
    hyperparameters, the final metrics, duration and the artifact folder. A search (`tune:`)
    has one row per trial, numbered in `trial`, its best marked in `best`; its verdict, on
    the best trial's row, is the item's."""
    import pandas as pd

    records = sorted(records, key=lambda r: (r.experiment, r.order))
    swept = _union([r.swept for r in records] + [t.values for r in records for t in r.trials])
    metrics = _union([r.final_metrics for r in records]
                     + [t.final_metrics for r in records for t in r.trials])
    gated = _union({g.metric: None for g in r.gate if g.gated} for r in records)
    searched = any(r.trials for r in records)
    rows = []
    for rec in records:
        arrows = {g.metric: g.arrow for g in rec.gate if g.gated}
        item = {"experiment": rec.experiment, "run": rec.run_id or "-",
                **{f"Δ {name}": arrows.get(name, "") for name in gated}}
        if not rec.trials:
            rows.append({**item, **_training_row(rec, rec.shown_status, rec.verdict,
                                                 rec.swept, swept, metrics)})
        # The verdict on the best trial's row, or the first's when none completed.
        judged = next((t for t in rec.trials if t.best), rec.trials[0] if rec.trials else None)
        for trial in rec.trials:
            status = "stopped early" if trial.stopped_early else trial.status
            if rec.cached:  # a reused search: its failed trials still read as failed
                status = CACHED if status == "completed" else f"{status} (cached)"
            rows.append({**item, "trial": trial.number, "best": "*" if trial.best else "",
                         **_training_row(trial, status, rec.verdict if trial is judged else "",
                                         {**rec.swept, **trial.values}, swept, metrics)})
    on_sagemaker = any(rec.backend == "sagemaker" for rec in records)
    pooled = any(t.pool_after or t.pool_from for rec in records for t in [rec, *rec.trials])
    columns = _LEADING[:2] + (["trial", "best"] if searched else []) + _LEADING[2:] + [
        s for s in swept if s not in _LEADING] + [
        m for m in metrics if m not in swept and m not in _LEADING] + [
        f"Δ {name}" for name in gated] + _TRAILING[:1] + (
        _JOB_COLUMNS if on_sagemaker else []) + (_POOL_COLUMNS if pooled else []) + _TRAILING[1:]
    df = pd.DataFrame(rows, columns=columns)
    for column in ("billable_s", "spot_saving", "start_s", "idle_s"):
        if column in df:
            df[column] = pd.to_numeric(df[column])  # None -> NaN, shown blank
    if searched:
        df["trial"] = df["trial"].astype("Int64")  # blank for the items that are no search
        df["best"] = df["best"].fillna("")
    return df


def _training_row(run, status: str, verdict: str, values: dict, swept: list[str],
                  metrics: list[str]) -> dict:
    """The columns of one training: an item's (RunRecord) or a trial's (TrialRecord)."""
    return {"status": status, "verdict": verdict,
            **{name: values.get(name) for name in swept},
            **{name: run.final_metrics.get(name) for name in metrics},
            "duration_s": round(run.duration_s, 1), "artifacts": run.artifact_dir,
            "job": run.job_name, "instance": run.instance_type,
            "billable_s": run.billable_seconds, "spot_saving": run.spot_saving,
            **_pool_cells(run, status)}


def _pool_cells(run, status: str) -> dict:
    """The warm-pool columns; blank on a reused row, whose pool was an earlier session's."""
    if status.startswith(CACHED) or status.endswith("(cached)"):
        return {"start_s": None, "pool": "", "pool_after": "", "idle_s": None}
    return {"start_s": run.start_seconds, "pool": pool_shown(run),
            "pool_after": run.pool_after, "idle_s": run.pool_idle_seconds}


def _union(dicts) -> list[str]:
    names: dict[str, None] = {}
    for d in dicts:
        names.update(dict.fromkeys(d))
    return list(names)


def render_text(df) -> str:
    # The artifact path is long and printed below the table; keep the table readable.
    table = df.drop(columns=["artifacts"])
    return table.to_string(index=False, na_rep="", float_format="{:.4g}".format)


def write(df, directory: Path, *, notes: list[str] = (), pictures: list[Path] = (),
          idle_seconds: float = 0.0) -> tuple[Path, Path]:
    """summary.csv, and summary.md for a CI job summary or a pull-request comment: the
    verdicts, the table (deltas against the baseline as arrows), cost, notes and plots.
    `idle_seconds`: the warm-pool idle time this session's jobs billed (report/pools.py:
    every job's, not only those the table's rows show)."""
    csv_path, md_path = directory / "summary.csv", directory / "summary.md"
    write_text_atomic(csv_path, df.to_csv(index=False))
    passed = int((df["verdict"] == PASS).sum())
    cached = int((df["status"] == CACHED).sum())
    # A search is one item however many trials it has.
    items = len(df[["experiment", "run"]].drop_duplicates())
    lines = ["# sm-pytest summary", "",
             f"{passed} of {items} runs passed"
             + (f", {cached} reused from the run cache" if cached else "") + "."]
    if "billable_s" in df and df["billable_s"].notna().any():
        lines.append(f"SageMaker billable time: {df['billable_s'].sum():.0f} s"
                     + (f" of training, plus {idle_seconds:.0f} instance-seconds of warm-pool"
                        " idle time" if idle_seconds else "") + ".")
    table = df.assign(artifacts=[_relative(p, directory) for p in df["artifacts"]])
    lines += ["", table.to_markdown(index=False, floatfmt=".4g")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note.splitlines()[0]}" for note in notes]
    if pictures:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({_relative(p, directory)})" for p in pictures]
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def _relative(path, directory: Path) -> str:
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return str(path)


def publish(df, directory: Path, say: Callable[[str], None], *, notes: list[str] = (),
            idle_seconds: float = 0.0,
            pictures: list[Path] = ()) -> None:
    """Write the summary files and `say` where they are, or why they could not be."""
    try:
        csv_path, md_path = write(df, directory, notes=notes, pictures=pictures,
                                  idle_seconds=idle_seconds)
    except OSError as exc:
        say(f"could not write the summary files: {exc}")
        return
    say(f"artifacts: {directory}")
    say(f"summary: {csv_path} and {md_path.name}")
