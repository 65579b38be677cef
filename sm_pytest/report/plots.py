"""PNG plots of runs: one learning curve per run, and a metric against a swept parameter;
and the session's set of them (draw): a learning curve per run and, for every matrix
experiment, each checked metric against each swept parameter.

matplotlib is optional (``pip install 'sm-pytest[plots]'``) and imported only inside the
functions. Figures are built as ``matplotlib.figure.Figure`` objects rendered by the Agg
canvas directly: pyplot and its global current-figure state are never touched, and neither
are rcParams or the selected backend, so plots can be drawn from several threads or tests at
once without interfering with each other or with the user's own matplotlib use.

Every file is written atomically (a temporary file in the same folder, then os.replace), so
a reader never sees half a PNG.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sm_pytest.model import RunRecord
from sm_pytest.run.artifacts import folder_name, write_bytes_atomic

__all__ = ["PlotsUnavailable", "available", "draw", "draw_session", "learning_curve",
           "sweep_plot"]

DPI = 100
_MARKER_LIMIT = 40  # series with at most this many points get markers


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def available() -> bool:
    """Whether matplotlib can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailable("plots need matplotlib: pip install 'sm-pytest[plots]'"
                               f" ({exc})") from None
    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _number(value: Any) -> float:
    """A float for plotting: NaN for None, infinities and anything non-numeric (a gap)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _placeholder(figure, text: str) -> None:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)


def _format(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4g}"


# --- learning curves -----------------------------------------------------------------------

# Layout of a learning curve, in inches: one row per metric (axes + the gap above the next).
_ROW_IN, _GAP_IN = 2.3, 0.75
_TOP_IN, _BOTTOM_IN, _LEFT_IN, _RIGHT_IN = 0.75, 0.55, 1.1, 0.25


def learning_curve(series: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """One PNG for one run: every metric series against its step (0, 1, 2, ... in log
    order, as in metrics.csv), one subplot per metric so that a loss near 0.05 and an
    accuracy near 0.98 each get a readable scale. Up to four metrics stack in one column,
    more go in two. NaN, None and infinite values leave gaps. Returns ``path``."""
    names = list(series)
    columns = 1 if len(names) <= 4 else 2
    rows = max(1, math.ceil(len(names) / columns))
    width, height = 6.4 * columns, _TOP_IN + _BOTTOM_IN + rows * _ROW_IN - _GAP_IN
    # A fixed layout (margins in inches): a per-run plot must be cheap, and constrained
    # layout would double the drawing time.
    figure = _new_figure(width, height, layout=None)
    figure.suptitle(title, y=1 - 0.12 / height, va="top")
    if not names:
        _placeholder(figure, "no metric values were recorded")
        return _save(figure, path)
    axes_height = _ROW_IN - _GAP_IN
    figure.subplots_adjust(left=_LEFT_IN / width, right=1 - _RIGHT_IN / width,
                           top=1 - _TOP_IN / height, bottom=_BOTTOM_IN / height,
                           hspace=_GAP_IN / axes_height, wspace=_LEFT_IN / (width / columns))
    from matplotlib.ticker import MaxNLocator

    grid = figure.subplots(rows, columns, squeeze=False, sharex=False)
    for index, name in enumerate(names):
        axes = grid[index // columns][index % columns]
        values = [_number(v) for v in series[name]]
        finite = [v for v in values if not math.isnan(v)]
        steps = range(len(values))
        marker = "o" if len(values) <= _MARKER_LIMIT else None
        axes.plot(steps, values, marker=marker, markersize=3, linewidth=1.5)
        last = _format(finite[-1]) if finite else "n/a"
        count = f"{len(values)} value" + ("" if len(values) == 1 else "s")
        axes.set_title(f"{name} (last {last}, {count})", fontsize="medium")
        axes.set_ylabel(name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(values) < 2:
            axes.set_xlim(-1, 1)
            axes.set_xticks([0])
        axes.grid(True, alpha=0.3)
        if not finite:
            axes.text(0.5, 0.5, "no finite values", ha="center", va="center",
                      transform=axes.transAxes)
        if index >= len(names) - columns:  # the bottom subplot of each column
            axes.set_xlabel("step (epoch or logged point)")
    for index in range(len(names), rows * columns):
        grid[index // columns][index % columns].set_visible(False)
    return _save(figure, path)


# --- sweeps --------------------------------------------------------------------------------


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A hashable stand-in for a value (a list hyperparameter becomes its text)."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else _label(value)


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if _is_numeric(value) else (1, 0, str(value))


def sweep_plot(rows: Sequence[Mapping[str, Any]], param: str, metric: str, path: Path,
               title: str, *, others: Sequence[str] | None = None) -> Path:
    """One PNG: ``metric`` against the swept ``param``, one point per run.

    ``rows`` hold one run each: its swept hyperparameters and its metric values (rows that
    lack ``param`` or ``metric`` are skipped). When other swept axes vary between rows, each
    combination of their values is one line with a legend entry (``batch-size=32, seed=1``).
    ``others`` names those axes; left out, every other key whose value varies is taken for
    one, so pass ``others`` when rows carry more than swept values and metrics (run names,
    durations, other metrics).

    The x axis is logarithmic when every value is positive and they span at least two
    decades (learning rates); strings or booleans are placed in order of appearance as
    categories. A NaN metric leaves a gap. Returns ``path``.
    """
    usable = [r for r in rows if param in r and metric in r]
    if others is None:
        keys = sorted({k for r in usable for k in r} - {param, metric})
        others = [k for k in keys
                  if len({_label(r.get(k)) for r in usable}) > 1]
    others = [k for k in others if k not in (param, metric)]

    xs = [r[param] for r in usable]
    numeric = bool(xs) and all(_is_numeric(x) for x in xs)
    categories: dict[str, int] = {}
    if not numeric:
        for x in xs:
            categories.setdefault(_label(x), len(categories))

    def position(x: Any) -> float:
        return float(x) if numeric else float(categories[_label(x)])

    groups: dict[tuple, list[tuple[Any, float]]] = {}
    for r in usable:
        key = tuple(_plain(r.get(k)) for k in others)
        groups.setdefault(key, []).append((r[param], _number(r[metric])))

    many = len(groups) > 1
    figure = _new_figure(7.5 if many else 6.4, 4.5)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(param)
    axes.set_ylabel(metric)
    axes.grid(True, alpha=0.3)
    if not usable:
        axes.set_axis_off()
        axes.text(0.5, 0.5, f"no run has both {param!r} and {metric!r}", ha="center",
                  va="center", transform=axes.transAxes)
        return _save(figure, path)

    for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
        points = sorted(groups[key], key=lambda p: position(p[0]))
        if len(others) == 1:  # the legend title names the axis
            label = _label(key[0])
        else:
            label = ", ".join(f"{k}={_label(v)}" for k, v in zip(others, key, strict=True))
        axes.plot([position(x) for x, _ in points], [y for _, y in points], marker="o",
                  linewidth=1.5, label=label)

    if numeric:
        low, high = min(float(x) for x in xs), max(float(x) for x in xs)
        if low > 0 and high / low >= 100:
            axes.set_xscale("log")
    else:
        axes.set_xticks(range(len(categories)), list(categories))
    if not any(not math.isnan(y) for points in groups.values() for _, y in points):
        axes.text(0.5, 0.5, f"no finite values of {metric}", ha="center", va="center",
                  transform=axes.transAxes)
    if many:
        figure.legend(loc="outside right upper", fontsize="small",
                      title=", ".join(others), title_fontsize="small")
    return _save(figure, path)


# --- the session's plots -------------------------------------------------------------------


def draw_session(records: list[RunRecord], root: Path, say: Callable[[str], None]
                 ) -> list[Path]:
    """The session's plots (draw), or none, said why with `say`: a plot must never cost the
    summary."""
    if not available():
        say("plots skipped: matplotlib is not installed (pip install 'sm-pytest[plots]')")
        return []
    try:
        return draw(records, root)
    except Exception as exc:
        say(f"plots skipped: {type(exc).__name__}: {exc}")
        return []


def draw(records: list[RunRecord], root: Path) -> list[Path]:
    """A learning curve in each trained run's folder and, under `root`/plots, each metric
    that a matrix experiment checks or gates against each of its swept parameters."""
    drawn: list[Path] = []
    for rec in records:
        if rec.trials:
            drawn += search_plots(rec, root)
        elif rec.metric_series and not rec.cached:
            path = Path(rec.artifact_dir) / "learning_curve.png"
            drawn.append(learning_curve(rec.metric_series, path, rec.name))
    by_experiment: dict[str, list[RunRecord]] = {}
    for rec in records:
        if rec.swept:
            by_experiment.setdefault(rec.experiment, []).append(rec)
    for experiment, recs in sorted(by_experiment.items()):
        params = list(dict.fromkeys(p for rec in recs for p in rec.swept))
        metrics = list(dict.fromkeys(c.metric for rec in recs for c in rec.checks))
        metrics += [g.metric for rec in recs for g in rec.gate
                    if g.gated and g.metric not in metrics]
        rows = [{**rec.swept, **rec.final_metrics} for rec in recs]
        for metric in dict.fromkeys(metrics):
            for param in params:
                name = folder_name(f"{experiment}-{metric}-vs-{param}") + ".png"
                others = [p for p in params if p != param]
                drawn.append(sweep_plot(rows, param, metric, root / "plots" / name,
                                        f"{experiment}: {metric} vs {param}", others=others))
    return drawn


def search_plots(rec: RunRecord, root: Path) -> list[Path]:
    """A search (`tune:`): each trial's learning curve, and under `root`/plots its objective
    against each searched hyperparameter and in the order the trials ran."""
    drawn = [learning_curve(t.metric_series, Path(t.artifact_dir) / "learning_curve.png",
                            f"{rec.name} trial {t.number}")
             for t in rec.trials if t.metric_series]
    objective = rec.objective_metric
    rows = [{**t.values, "trial": t.number, objective: t.objective}
            for t in rec.trials if t.objective is not None]
    for param in dict.fromkeys(p for t in rec.trials for p in t.values):
        name = folder_name(f"{rec.name}-{objective}-vs-{param}") + ".png"
        drawn.append(sweep_plot(rows, param, objective, root / "plots" / name,
                                f"{rec.name}: {objective} vs {param}", others=[]))
    name = folder_name(f"{rec.name}-{objective}-by-trial") + ".png"
    drawn.append(sweep_plot(rows, "trial", objective, root / "plots" / name,
                            f"{rec.name}: {objective} in trial order", others=[]))
    return drawn
