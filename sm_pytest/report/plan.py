"""The plan, printed before anything runs: which runs go where, which are reused from the
cache, and at most what they can cost.

    run               backend    instance          spot  reuse  max_run  $/hour  at most
    lr_sweep[lr=1.0]  sagemaker  ml.m5.xlarge      no    no          1h   $0.23    $0.24
    lr_sweep[lr=0.1]  sagemaker  ml.m5.xlarge      no    yes         1h   $0.23   reused
    gpu               sagemaker  2 x ml.g5.xlarge  yes   no         30m  $1.408    $1.51
    baseline          local      local             -     no         24h       -    $0.00
    at most $1.74 for 4 runs; 1 would be reused from the cache

A `tune:` item is one row, ``lr_search (12 trials)``, bounded by all its trials, and the total
line says how many of its runs are searches: ``at most $2.88 for 2 runs (one of them a search
of 12 trials)``, ``... for 3 runs (two of them searches, of 6 and 12 trials)``.

**What the bound covers.** SageMaker bills training instances per second of training time,
so one job costs at most (``max_run`` + the 120 s that SageMaker gives a stopped job after
SIGTERM) x on-demand price x instance count, plus, without spot, up to ``keep_alive``
seconds of warm-pool idle time at the same rate. With spot the bound is the same on-demand
figure: a spot job is billed for at most its training time, at a price that never exceeds
on-demand, and the time spent waiting for capacity (``max_wait``) is not billed, so
``max_wait`` never raises the bound. Storage (the ML volume), S3 and data transfer are not
included; they are small for jobs like these but not zero. Local runs cost 0. Amounts are
rounded up to the cent.

Prices come from a ``prices:`` mapping (instance type -> USD per instance-hour, on-demand,
training) in config/sagemaker.yaml, read by sagemaker/prices.py; a type with no price is
shown as "?" and left out of the total, which says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sm_pytest.sagemaker.settings import SageMakerSettings
    from sm_pytest.spec.experiment_file import RunSpec

__all__ = ["PlanRow", "cost_bound", "format_plan", "plan_row", "plan_rows"]

# StoppingCondition: "To stop a training job, SageMaker sends the algorithm the SIGTERM
# signal, which delays job termination for 120 seconds."
STOP_GRACE_S = 120
REUSE_VALUES = ("yes", "no", "-")


@dataclass(frozen=True)
class PlanRow:
    run: str
    backend: str
    instance_type: str
    spot: bool
    reuse: str  # "yes" / "no", or "-" when the cache is not in use
    max_run_s: int
    price_per_hour: float | None  # USD per instance-hour, None when unknown (or local)
    cost_bound: float | None  # USD, None when the price is unknown; 0.0 for local runs
    instance_count: int = 1
    trials: int | None = None  # a search: the most trials it launches; None for one job

    def __post_init__(self) -> None:
        if self.reuse not in REUSE_VALUES:
            raise ValueError(f"PlanRow.reuse must be one of {REUSE_VALUES}, not {self.reuse!r}")

    @property
    def local(self) -> bool:
        return self.backend == "local"


def cost_bound(max_run_s: int, price_per_hour: float | None, instance_count: int = 1,
               spot: bool = False, max_wait_s: int | None = None, *, keep_alive_s: int = 0,
               stop_grace_s: int = STOP_GRACE_S) -> float | None:
    """Upper bound in USD of one SageMaker job; None when the price is unknown.

    (max_run + stop grace [+ keep_alive without spot]) hours x on-demand price x count.
    Spot: still the on-demand figure (spot never bills more than on-demand, nor more than
    the training time); ``max_wait_s`` is accepted for clarity and does not change the bound,
    since waiting for capacity is not billed. Warm pools are not available with spot, so
    ``keep_alive_s`` only counts without it. For a local run use 0.0 (see ``plan_row``).
    """
    if price_per_hour is None:
        return None
    for name, value in (("max_run_s", max_run_s), ("instance_count", instance_count),
                        ("keep_alive_s", keep_alive_s), ("stop_grace_s", stop_grace_s)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if max_wait_s is not None and max_wait_s < 0:
        raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
    if not math.isfinite(price_per_hour) or price_per_hour < 0:
        raise ValueError(f"price_per_hour must be a non-negative number, got {price_per_hour}")
    seconds = max_run_s + stop_grace_s + (0 if spot else keep_alive_s)
    return seconds / 3600 * price_per_hour * instance_count


def plan_row(run: str, *, backend: str, max_run_s: int, instance_type: str = "local",
             spot: bool = False, reuse: str = "-", prices: Mapping[str, float] | None = None,
             instance_count: int = 1, keep_alive_s: int = 0, emulated: bool = False) -> PlanRow:
    """One row: a local run costs 0 and has no price; so does an emulated SageMaker run
    (``--sm-emulate``, shown as "sagemaker (emulated)"); a SageMaker run is priced from
    ``prices`` (None, shown "?", when its instance type is not there). A run on several
    hosts shows them as "2 x local", "2 x ml.g5.xlarge"."""
    if backend == "local":
        return PlanRow(run, backend, "local", False, reuse, max_run_s, None, 0.0,
                       instance_count)
    if emulated:
        return PlanRow(run, f"{backend} (emulated)", instance_type, spot, reuse, max_run_s,
                       None, 0.0, instance_count)
    price = (prices or {}).get(instance_type)
    bound = cost_bound(max_run_s, price, instance_count, spot, keep_alive_s=keep_alive_s)
    return PlanRow(run, backend, instance_type, spot, reuse, max_run_s, price, bound,
                   instance_count)


def plan_rows(repeats: Iterable[RunSpec], *, reused: Callable[[RunSpec], bool] | None = None,
              settings_for: Callable[[RunSpec], SageMakerSettings] | None = None,
              prices: Mapping[str, float] | None = None) -> list[PlanRow]:
    """One row per repeat. ``reused(repeat)``: whether the run cache holds it (None when the
    cache is not in use); ``settings_for(repeat)``: its SageMaker settings (None for local
    runs); ``prices``: see sagemaker/prices.py."""
    rows = []
    for repeat in repeats:
        reuse = "-" if reused is None else "yes" if reused(repeat) else "no"
        if settings_for is None:
            row = plan_row(repeat.name, backend="local", max_run_s=repeat.max_run,
                           reuse=reuse, instance_count=repeat.instance_count)
        else:
            s = settings_for(repeat)
            row = plan_row(repeat.name, backend="sagemaker", max_run_s=s.max_run,
                           instance_type=s.instance_type, spot=s.spot, reuse=reuse,
                           prices=prices, instance_count=s.instance_count,
                           # A tuning job's trials keep no warm pool (sagemaker/tuning.py).
                           keep_alive_s=0 if s.spot or getattr(repeat, "tune", None) is not None
                           else s.keep_alive_s, emulated=s.emulate)
        rows.append(_searched(row, repeat))
    return rows


def _searched(row: PlanRow, run: RunSpec) -> PlanRow:
    """A `tune:` item launches up to max_jobs trials, each bounded like one job: running
    them side by side changes when they are billed, not how much."""
    tune = getattr(run, "tune", None)
    if tune is None:
        return row
    trials = tune.max_jobs
    return dataclasses.replace(
        row, run=f"{row.run} ({_plural(trials, 'trial')})", trials=trials,
        cost_bound=None if row.cost_bound is None else row.cost_bound * trials)


# --- the table -----------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def _money(value: float) -> str:
    """Dollars rounded UP to the cent: the figure is an upper bound, so it must not shrink
    (round() first drops float noise such as 0.23 * 100 = 23.000000000000004)."""
    cents = math.ceil(round(value * 100, 6))
    return f"${cents / 100:,.2f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _cells(row: PlanRow) -> list[str]:
    instance = row.instance_type
    if row.instance_count > 1:
        instance = f"{row.instance_count} x {instance}"
    spot = "-" if row.local else "yes" if row.spot else "no"
    if row.price_per_hour is not None:
        price = f"${row.price_per_hour:.4g}"
    else:  # no price: free (local, emulated) or unknown
        price = "-" if row.cost_bound == 0.0 else "?"
    if row.reuse == "yes":
        bound = "reused"
    elif row.cost_bound is None:
        bound = "?"
    else:
        bound = _money(row.cost_bound)
    return [row.run, row.backend, instance, spot, row.reuse, _duration(row.max_run_s), price,
            bound]


_HEADER = ["run", "backend", "instance", "spot", "reuse", "max_run", "$/hour", "at most"]
_RIGHT = {5, 6, 7}  # right-aligned columns


_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
          8: "eight", 9: "nine"}


def _searches(rows: Sequence[PlanRow]) -> str:
    """What the runs' searches add to their count: a search is one run of many trials."""
    trials = sorted(r.trials for r in rows if r.trials is not None)
    if not trials:
        return ""
    if len(rows) == 1:
        return f" (a search of {_plural(trials[0], 'trial')})"
    if len(trials) == 1:
        return f" (one of them a search of {_plural(trials[0], 'trial')})"
    which = ("all" if len(trials) == len(rows)
             else f"{_WORDS.get(len(trials), str(len(trials)))} of them")
    if len(set(trials)) == 1:
        return f" ({which} searches, of {trials[0]} trials each)"
    listed = ", ".join(map(str, trials[:-1])) + f" and {trials[-1]}"
    return f" ({which} searches, of {listed} trials)"


def _total(rows: Sequence[PlanRow]) -> str:
    launched = [r for r in rows if r.reuse != "yes"]
    reused = len(rows) - len(launched)
    known = sum(r.cost_bound for r in launched if r.cost_bound is not None)
    unpriced = sorted({r.instance_type for r in launched if r.cost_bound is None})
    unpriced_runs = sum(1 for r in launched if r.cost_bound is None)
    text = f"at most {_money(known)} for {_plural(len(rows), 'run')}{_searches(rows)}"
    if unpriced:
        text += (f", not counting {unpriced_runs} on {', '.join(unpriced)} (no price: add"
                 f" {'it' if len(unpriced) == 1 else 'them'} under prices: in"
                 " config/sagemaker.yaml)")
    if any(r.reuse != "-" for r in rows):
        text += f"; {reused} would be reused from the cache"
    return text


def format_plan(rows: Sequence[PlanRow]) -> str:
    """An aligned text table, one line per run, and the total line."""
    table = [_HEADER] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    lines = []
    for line in table:
        cells = [cell.rjust(widths[i]) if i in _RIGHT else cell.ljust(widths[i])
                 for i, cell in enumerate(line)]
        lines.append("  ".join(cells).rstrip())
    lines.append(_total(rows))
    return "\n".join(lines) + "\n"
