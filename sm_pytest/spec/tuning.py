"""The `tune:` block of an experiment file: a search over hyperparameter ranges that is one
pytest item, run as a SageMaker hyperparameter tuning job (or locally from the same block).

The names are SageMaker's (CreateHyperParameterTuningJob): strategies Bayesian, Random,
Hyperband and Grid; scaling Auto, Linear, Logarithmic and ReverseLogarithmic; objective
Maximize or Minimize of one metric; early stopping Off or Auto.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
OBJECTIVE_TYPES = ("Maximize", "Minimize")
EARLY_STOPPING = ("Off", "Auto")
CONTINUOUS, INTEGER, CATEGORICAL = "continuous", "integer", "categorical"
# The service's limits (FIELD-NOTES 5): up to 30 ranges of each kind.
MAX_RANGES_PER_KIND = 30
# ...and, per the ParameterRanges documentation, "the sum of the number of hyperparameters
# for all the ranges can't exceed" that same 30 (the developer guide: "up to 30 total").
MAX_RANGES = 30
# ParameterValues, the values of one categorical range: 1 to 30 (service model).
MAX_VALUES_PER_CATEGORICAL = 30


@dataclass(frozen=True)
class Range:
    """One searched hyperparameter."""

    name: str
    kind: str  # CONTINUOUS, INTEGER or CATEGORICAL
    min: float | int | None = None  # CONTINUOUS and INTEGER
    max: float | int | None = None
    scaling: str = "Auto"  # CONTINUOUS and INTEGER
    values: tuple[Any, ...] = ()  # CATEGORICAL
    line: int | None = None  # where the range is written, for later messages


@dataclass(frozen=True)
class TuneSpec:
    """A whole `tune:` block, validated."""

    strategy: str
    objective_metric: str
    objective_type: str  # Maximize or Minimize
    max_jobs: int
    max_parallel_jobs: int
    ranges: tuple[Range, ...]
    early_stopping: str = "Off"
    random_seed: int | None = None

    @property
    def maximize(self) -> bool:
        return self.objective_type == "Maximize"

    def better(self, a: float, b: float) -> bool:
        """Whether objective value `a` beats `b`."""
        return a > b if self.maximize else a < b


def grid_points(tune: TuneSpec) -> list[dict[str, Any]]:
    """Every combination of the ranges' values, each once, as a Grid search runs them: the
    first range in the file varies slowest, like the axes of a matrix. Grid takes
    categorical ranges only (SageMaker's rule, checked when the file is read)."""
    numeric = [spec.name for spec in tune.ranges if spec.kind != CATEGORICAL]
    if numeric:
        raise ValueError(f"a grid takes categorical ranges only, not {', '.join(numeric)}")
    names = [spec.name for spec in tune.ranges]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(spec.values for spec in tune.ranges))]


def random_points(tune: TuneSpec, count: int, seed: int | None) -> list[dict[str, Any]]:
    """`count` points drawn independently from the ranges, the same ones for the same seed
    (and ranges). Categorical values keep their YAML types; integer ranges give ints."""
    rng = random.Random(seed)
    return [{spec.name: sample(spec, rng) for spec in tune.ranges} for _ in range(count)]


def sample(spec: Range, rng: random.Random) -> Any:
    """One value of `spec`, drawn the way its scaling spreads the search.

    Linear (and Auto, which SageMaker does not define further) is uniform; Logarithmic is
    uniform in log space; ReverseLogarithmic is uniform in the log of 1 - x, so that values
    close to 1 are searched finely. An integer range rounds a draw over [min - 0.5, max + 0.5],
    so that each end gets a whole share."""
    if spec.kind == CATEGORICAL:
        return rng.choice(spec.values)
    low, high = spec.min, spec.max
    if spec.kind == INTEGER:
        if spec.scaling != "Logarithmic":
            return rng.randint(int(low), int(high))
        drawn = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
        return min(max(round(drawn), int(low)), int(high))
    if spec.scaling == "Logarithmic":
        drawn = math.exp(rng.uniform(math.log(low), math.log(high)))
    elif spec.scaling == "ReverseLogarithmic":
        drawn = 1.0 - math.exp(rng.uniform(math.log(1.0 - high), math.log(1.0 - low)))
    else:
        drawn = rng.uniform(low, high)
    # exp and log can land a hair outside the range; a trial must never leave it.
    return min(max(float(drawn), float(low)), float(high))


# The median rule judges a trial against the trials that completed before it: with fewer,
# the median says little. SageMaker does not publish its own minimum; 3 is ours, for the
# local search and the emulated tuning job alike.
MEDIAN_RULE_MIN_TRIALS = 3


def median_rule_stops(values: Sequence[float], completed: Sequence[Sequence[float]], *,
                      maximize: bool) -> bool:
    """SageMaker's `Auto` early stopping ("How Early Stopping Works"): whether a trial whose
    objective values, epoch by epoch, are `values` (its latest last) is stopped, because its
    latest is worse than the median of the running averages, up to the same epoch, of the
    trials that `completed` before it (at least MEDIAN_RULE_MIN_TRIALS of them reaching it)."""
    epoch = len(values)
    if not epoch:
        return False
    averages = [sum(done[:epoch]) / epoch for done in completed if len(done) >= epoch]
    if len(averages) < MEDIAN_RULE_MIN_TRIALS:
        return False
    median = statistics.median(averages)
    return values[-1] < median if maximize else values[-1] > median
