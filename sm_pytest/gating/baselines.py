"""Recorded final metrics per run, to gate accuracy regressions against.

`pytest --sm-save-baseline main` writes `baselines/main.json`; `pytest --sm-baseline main`
compares every run with its entry there. The file is meant to be committed and reviewed, so it
is written atomically, with sorted keys and a final newline, and a save merges into it: runs
of this session replace their entries, every other run is kept (a `-k` subset erases nothing).

    {"format": "sm-pytest-baseline", "version": 1, "name": "main",
     "created": "2025-01-01T12:00:00+00:00", "updated": "...",
     "runs": {"lr_sweep[lr=0.1]": {
         "metrics": {"test_accuracy": {"mean": 0.97, "std": 0.004, "n": 3}},
         "fingerprint": "...", "recorded": "..."}}}

A file that cannot be read as such a baseline (broken JSON, a merge conflict, someone else's
JSON, a newer format) is a BaselineError saying which file, what is wrong and what to do; it
is never modified, nor overwritten by a save.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sm_pytest.messages import aligned_table
from sm_pytest.run.artifacts import write_text_atomic
from sm_pytest.spec.tolerances import Tolerance, guess_direction

FORMAT = "sm-pytest-baseline"
VERSION = 1
MAX_FILE_BYTES = 32 * 1024 * 1024
SIGNIFICANT_DIGITS = 10  # stored values are rounded so that diffs stay readable

VERDICTS = ("ok", "regressed", "improved", "missing-metric", "new-metric")
FAILING = ("regressed", "missing-metric")

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_MAX_NAME = 100
_CONFLICT = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)


class BaselineError(Exception):
    """A baseline that cannot be used, phrased for the user: the file, what is wrong and
    what to do."""

    def __init__(self, message: str, path: Path | None = None):
        self.path = path
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class MetricStats:
    mean: float
    std: float = 0.0
    n: int = 1

    @classmethod
    def of(cls, values: list[float]) -> MetricStats:
        """Mean and sample standard deviation (0 for a single value) of final values, one per
        repeat. A nan or inf among them gives a non-finite mean and a nan std."""
        values = [float(v) for v in values]
        if not values:
            raise ValueError("MetricStats.of needs at least one value")
        if not all(math.isfinite(v) for v in values):
            return cls(statistics.fmean(values), math.nan, len(values))
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values))

    def __str__(self) -> str:
        if self.n > 1:
            return f"{_num(self.mean)} ± {_num(self.std)} (n={self.n})"
        return _num(self.mean)


@dataclass
class Baseline:
    name: str
    path: Path
    runs: dict[str, dict[str, MetricStats]]
    fingerprints: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    updated: str | None = None

    def entry(self, run_name: str) -> dict[str, MetricStats] | None:
        """The recorded metrics of a run, or None when the baseline has no entry for it."""
        return self.runs.get(run_name)

    def fingerprint(self, run_name: str) -> str | None:
        return self.fingerprints.get(run_name)


def _record_hint(name: str) -> str:
    return f"record it again with --sm-save-baseline {name}"


def baseline_path(folder: Path, name: str) -> Path:
    """`folder/<name>.json`, for a name of letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not name:
        raise BaselineError("the baseline name is empty; give a name such as main")
    stem = name[: -len(".json")]
    if name.endswith(".json") and stem and _NAME.match(stem):
        raise BaselineError(f"baseline name {name!r}: give it without '.json', as {stem!r}"
                            f" (it is stored as {Path(folder) / name})")
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise BaselineError(f"baseline name {name!r} is not usable: use up to {_MAX_NAME}"
                            " letters, digits, '.', '_' and '-', not starting with '.', and no"
                            " folders (e.g. main or release-1.2); the folder is set separately")
    return Path(folder) / f"{name}.json"


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}: keep one of them")
        result[key] = value
    return result


def _read(path: Path, name: str) -> dict[str, Any] | None:
    """The file's JSON document, checked to be a baseline we can read; None if absent."""
    fix = (f"fix it, restore it from git (git checkout -- {path}), or delete it and"
           f" {_record_hint(name)}")
    try:
        if not path.exists():
            return None
        if not path.is_file():
            raise BaselineError(f"{path}: is not a file; move it away or choose another"
                                " baseline name", path)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BaselineError(f"{path}: the file is {size} bytes, more than a baseline can be"
                                f" ({MAX_FILE_BYTES}); {fix}", path)
        data = path.read_bytes()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the file: {exc.strerror}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: the file is not UTF-8 text, so not a baseline; {fix}",
                            path) from None
    if _CONFLICT.search(text):
        raise BaselineError(f"{path}: the file holds git merge conflict markers (<<<<<<<);"
                            f" resolve the conflict, or delete it and {_record_hint(name)}",
                            path)
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}: the file is not valid JSON: {exc.msg}"
                            f" (column {exc.colno}); {fix}", path) from None
    except (ValueError, RecursionError) as exc:
        raise BaselineError(f"{path}: the file is not a valid baseline ({exc}); {fix}",
                            path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BaselineError(f"{path}: this is not an sm-pytest baseline (it has no \"format\":"
                            f" \"{FORMAT}\" field), so it was not written by sm-pytest; move it"
                            " away, or choose another baseline name or folder", path)
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BaselineError(f"{path}: \"version\" must be a whole number from 1, not"
                            f" {version!r}; {fix}", path)
    if version > VERSION:
        raise BaselineError(f"{path}: the baseline was written by a newer sm-pytest (format"
                            f" version {version}; this one reads version {VERSION}); upgrade"
                            " sm-pytest, or record a baseline under another name", path)
    return doc


def _stats(path: Path, where: str, raw: Any, fix: str) -> MetricStats:
    if _finite_number(raw):  # a hand-written shorthand: "test_accuracy": 0.97
        return MetricStats(float(raw))
    if not isinstance(raw, dict) or not _finite_number(raw.get("mean")):
        raise BaselineError(f"{path}: {where} must be a mapping with a finite number \"mean\""
                            f" (and \"std\", \"n\"), not {raw!r}; {fix}", path)
    std = raw.get("std", 0.0)
    n = raw.get("n", 1)
    if not _finite_number(std) or std < 0:
        raise BaselineError(f"{path}: {where}.std must be a number of 0 or more, not {std!r};"
                            f" {fix}", path)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BaselineError(f"{path}: {where}.n must be a whole number of 1 or more, not"
                            f" {n!r}; {fix}", path)
    return MetricStats(float(raw["mean"]), float(std), n)


def _parse(path: Path, name: str, doc: dict[str, Any]) -> Baseline:
    fix = (f"fix it, restore it from git (git checkout -- {path}), or delete it and"
           f" {_record_hint(name)}")
    raw_runs = doc.get("runs", {})
    if not isinstance(raw_runs, dict):
        raise BaselineError(f"{path}: \"runs\" must be a mapping of run name to its entry;"
                            f" {fix}", path)
    baseline = Baseline(name, path, {}, created=_text(doc.get("created")),
                        updated=_text(doc.get("updated")))
    for run, entry in raw_runs.items():
        where = f"runs[{json.dumps(run, ensure_ascii=False)}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics", {}), dict):
            raise BaselineError(f"{path}: {where} must be a mapping with a \"metrics\" mapping;"
                                f" {fix}", path)
        baseline.runs[run] = {
            metric: _stats(path, f"{where}.metrics.{metric}", raw, fix)
            for metric, raw in entry.get("metrics", {}).items()
        }
        for key, target in (("fingerprint", baseline.fingerprints),
                            ("recorded", baseline.recorded)):
            value = entry.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise BaselineError(f"{path}: {where}.{key} must be a string, not {value!r};"
                                    f" {fix}", path)
            target[run] = value
    return baseline


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def load(folder: Path, name: str) -> Baseline | None:
    """The baseline `folder/<name>.json`, or None when there is no such file. Only reads."""
    path = baseline_path(folder, name)
    doc = _read(path, name)
    return None if doc is None else _parse(path, name, doc)


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _finite_values(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [float(v) for v in values if _finite_number(v)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def save(folder: Path, name: str, results: dict[str, dict[str, list[float]]], *,
         fingerprints: dict[str, str] | None = None) -> Path:
    """Record `results` (run name -> metric -> final values, one per repeat) in
    `folder/<name>.json`, merged into what is there: these runs' entries are replaced, other
    runs are kept as they are. An entry whose values did not change is left as it was, and a
    save that changes nothing does not rewrite the file. Values that are nan or inf are left
    out (a metric with no finite value is not recorded). A file that is not a readable
    baseline is a BaselineError and is left untouched. Not safe against concurrent savers:
    save once, from one process (the pytest-xdist controller)."""
    path = baseline_path(folder, name)
    doc = _read(path, name)
    if doc is None:
        doc = {}
    else:
        _parse(path, name, doc)  # refuse to merge into a structurally broken file
    stamp = _now()
    runs = dict(doc.get("runs") or {})
    changed = not path.exists() or doc.get("version") != VERSION or doc.get("name") != name
    for run, metrics in results.items():
        recorded: dict[str, Any] = {}
        for metric, values in metrics.items():
            finite = _finite_values(values)
            if finite:
                stats = MetricStats.of(finite)
                recorded[metric] = {"mean": _round(stats.mean), "std": _round(stats.std),
                                    "n": stats.n}
        fingerprint = (fingerprints or {}).get(run) or None
        old = runs.get(run)
        if (isinstance(old, dict) and old.get("metrics") == recorded
                and old.get("fingerprint") == fingerprint):
            continue  # the same values: keep the entry and its date, so the diff stays quiet
        entry: dict[str, Any] = {"metrics": recorded, "recorded": stamp}
        if fingerprint:
            entry["fingerprint"] = fingerprint
        runs[run] = entry
        changed = True
    if not changed:
        return path
    doc.update({"format": FORMAT, "version": VERSION, "name": name, "updated": stamp,
                "runs": runs})
    doc.setdefault("created", stamp)
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    _write_atomic(path, text + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline: {exc.strerror or exc}; check"
                            " that its folder is writable", path) from None


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: MetricStats | None
    now: MetricStats | None
    delta: float | None  # now.mean - baseline.mean
    allowed: float | None  # the worsening allowed; None when not gated or nothing to compare
    verdict: str  # one of VERDICTS
    tolerance: Tolerance | None = None  # None: not gated, never fails
    sigma: float = 0.0  # standard error of the difference of the means (repeats only)
    run: str = ""

    @property
    def gated(self) -> bool:
        return self.tolerance is not None

    @property
    def direction(self) -> str | None:
        return self.tolerance.direction if self.tolerance else guess_direction(self.metric)

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING


def _values(raw: Any) -> list[float]:
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raw = [raw]
    return [float(v) for v in raw if v is not None and not isinstance(v, bool)]


def _sigma(base: MetricStats, now: MetricStats) -> float:
    if base.n <= 1 and now.n <= 1:
        return 0.0
    return math.sqrt(base.std ** 2 / base.n + now.std ** 2 / now.n)


def _beyond(amount: float, allowed: float) -> bool:
    """amount > allowed, with float noise at the boundary counted as within (0.97 - 0.96 is
    0.010000000000000009)."""
    return amount > allowed and not math.isclose(amount, allowed, rel_tol=1e-9, abs_tol=1e-12)


def compare(run_name: str, now: dict[str, list[float]], entry: dict[str, MetricStats],
            tolerances: dict[str, Tolerance]) -> list[Comparison]:
    """One Comparison per metric in the baseline entry or the run, sorted by name. Only
    metrics with a tolerance are gated: they can be 'regressed' (worse by more than allowed),
    'improved' (better by more than allowed: refresh the baseline) or 'missing-metric' (the
    run produced no value). A nan or inf value of a gated metric is a regression."""
    comparisons = []
    for metric in sorted(set(entry) | set(now)):
        tolerance = tolerances.get(metric)
        base = entry.get(metric)
        values = _values(now.get(metric))
        current = MetricStats.of(values) if values else None
        if base is None and current is None:
            continue
        delta = current.mean - base.mean if base is not None and current is not None else None
        allowed: float | None = None
        sigma = 0.0
        if base is None:
            verdict = "new-metric"
        elif tolerance is None:
            verdict = "ok"
        elif current is None:
            verdict = "missing-metric"
            allowed = tolerance.allowed(base.mean)
        else:
            sigma = _sigma(base, current) if math.isfinite(current.mean) else 0.0
            allowed = tolerance.allowed(base.mean, sigma)
            worsening = -delta if tolerance.direction == "higher" else delta
            if not math.isfinite(current.mean) or _beyond(worsening, allowed):
                verdict = "regressed"
            elif _beyond(-worsening, allowed):
                verdict = "improved"
            else:
                verdict = "ok"
        comparisons.append(Comparison(metric, base, current, delta, allowed, verdict,
                                      tolerance, sigma, run_name))
    return comparisons


def failed(comparisons: list[Comparison]) -> bool:
    """Whether any gated metric regressed or is missing."""
    return any(c.failed for c in comparisons)


def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _signed(value: float) -> str:
    if not math.isfinite(value):
        return str(value) if math.isnan(value) else f"{value:+}"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:+.4f}"
    return f"{value:+.4g}"


_VERDICT_TEXT = {
    "ok": "ok",
    "regressed": "REGRESSED",
    "improved": "improved",
    "missing-metric": "MISSING (no value)",
    "new-metric": "new (no baseline)",
}


def _allowed_text(c: Comparison) -> str:
    if c.tolerance is None:
        return "not gated"
    if c.allowed is None:
        return "—"
    text = _num(c.allowed)
    if c.baseline is not None and c.allowed > c.tolerance.allowed(c.baseline.mean):
        text += f" ({c.tolerance.k:g}σ)"  # the noise band is wider than max_drop
    return text


def format_table(comparisons: list[Comparison]) -> str:
    """A plain-text table: metric, baseline, now, delta, allowed (the worsening allowed, or
    'not gated'), verdict. Rows are indented by two spaces, like the threshold report."""
    if not comparisons:
        return "  (no metrics to compare)"
    rows = [("metric", "baseline", "now", "delta", "allowed", "verdict")]
    for c in comparisons:
        rows.append((
            c.metric,
            "—" if c.baseline is None else str(c.baseline),
            "—" if c.now is None else str(c.now),
            "—" if c.delta is None else _signed(c.delta),
            _allowed_text(c),
            _VERDICT_TEXT.get(c.verdict, c.verdict),
        ))
    return aligned_table(rows)


def delta_arrow(c: Comparison) -> str:
    """The change for a Markdown summary, direction-aware: '▲ +0.0120' when the metric got
    better, '▼ -0.0150' when worse, '= 0.0000' when unchanged, the bare signed delta when the
    direction is unknown, '—' when there is nothing to compare."""
    if c.delta is None:
        return "—"
    if math.isnan(c.delta):
        return "▼ nan"
    scale = max(1.0, abs(c.baseline.mean) if c.baseline else 0.0)
    if abs(c.delta) <= 1e-9 * scale:  # stored values are rounded to 10 significant digits
        return f"= {_num(0.0)}"
    direction = c.direction
    if direction is None:
        return _signed(c.delta)
    better = c.delta > 0 if direction == "higher" else c.delta < 0
    return f"{'▲' if better else '▼'} {_signed(c.delta)}"
