"""What CreateHyperParameterTuningJob refuses beyond its service model, and the trials a
request's strategy runs.

The service model's constraints (the name's 32 characters and pattern, enums, required
members, list sizes) are checked for every operation by service_rules. The rules here are
the ones the API reference and the developer guide state in words, which no shape carries:

* Hyperband "has its own advanced internal early stopping mechanism,
  TrainingJobEarlyStoppingType must be OFF to use Hyperband"; StrategyConfig "should be
  provided only if Hyperband is selected"; without MaxResource, Hyperband infers it from
  the static hyperparameters ``epochs``, ``numepochs``, ``n-epochs``, ``n_epochs`` or
  ``num_epochs``, and "If HyperbandStrategyConfig is unable to infer a value for
  MaxResource, it generates a validation error" (HyperbandStrategyConfig).
* Up to 30 ranges of each kind, and 30 in all: "the sum of the number of hyperparameters
  for all the ranges can't exceed the maximum number specified" (ParameterRanges).
* Logarithmic scaling "works only for ranges that have only values greater than 0";
  ReverseLogarithmic "only for ranges that are entirely within the range 0<=x<1.0"
  (ContinuousParameterRange, IntegerParameterRange).
* Grid takes categorical ranges only, and MaxNumberOfTrainingJobs, if given, must be the
  number of combinations (developer guide, "How hyperparameter tuning works").

Where the documents say nothing, the emulator takes the plain reading and says so in its
message: a range's minimum must be below its maximum, a tuned name cannot also be static, the
objective must be one of the metric definitions (a custom image reports no other metric),
and at most MaxNumberOfTrainingJobs run in parallel.

The search itself (:func:`search_points`): Grid runs every combination once, in order.
Random draws MaxNumberOfTrainingJobs points, seeded by RandomSeed. Bayesian and Hyperband are
emulated by that same seeded random draw: the emulator runs real trials, not SageMaker's
optimiser.

Which running trial is stopped early (:func:`early_stopping_rule`, :class:`MedianRule`): with
TrainingJobEarlyStoppingType Auto, the rule of the developer guide ("How Early Stopping
Works"), on the objective's intermediate values (each log line its metric definition
matches is one epoch). Hyperband's own stopping, which the documents do not spell out
("uses the final and intermediate results of a training job to dynamically allocate
resources ... while automatically stopping under-performing configurations"), is emulated by
that same rule, never before MinResource values ("If the value for MinResource has not been
reached, the training job is not stopped by Hyperband"; HyperbandStrategyConfig).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sm_pytest.sagemaker.tuning import EPOCH_KEYS
from sm_pytest.spec.tuning import (
    CATEGORICAL,
    CONTINUOUS,
    INTEGER,
    MAX_RANGES_PER_KIND,
    Range,
    TuneSpec,
    grid_points,
    median_rule_stops,
    random_points,
)

__all__ = ["NOT_EMULATED", "RANGE_LISTS", "MedianRule",
           "early_stopping_rule", "problem", "search_points", "unemulated"]

RANGE_LISTS = {"ContinuousParameterRanges": CONTINUOUS, "IntegerParameterRanges": INTEGER,
               "CategoricalParameterRanges": CATEGORICAL}
# Members the emulator does not run: a request with one is answered as not emulated, never
# silently run without it.
NOT_EMULATED = {
    "TrainingJobDefinitions": "several training job definitions",
    "WarmStartConfig": "warm start",
    "Autotune": "Autotune",
}
_NOT_EMULATED_CONFIG = {
    "TuningJobCompletionCriteria": "tuning job completion criteria",
}
_NOT_EMULATED_DEFINITION = {
    "HyperParameterTuningResourceConfig": "HyperParameterTuningResourceConfig (instance"
                                          " pools)",
    "HyperParameterRanges": "ranges in the training job definition",
}


def unemulated(request: Mapping[str, Any]) -> str | None:
    """The feature of ``request`` that the emulator does not run, if any, in words."""
    config = request.get("HyperParameterTuningJobConfig") or {}
    definition = request.get("TrainingJobDefinition") or {}
    ranges = config.get("ParameterRanges") or {}
    for members, table in ((request, NOT_EMULATED), (config, _NOT_EMULATED_CONFIG),
                           (definition, _NOT_EMULATED_DEFINITION)):
        for key, words in table.items():
            if members.get(key):
                return f"sm-pytest's emulator does not emulate {words} ({key})"
    if ranges.get("AutoParameters"):
        return "sm-pytest's emulator does not emulate AutoParameters"
    return None


def _number(text: Any, kind: str) -> float | int | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    if kind == INTEGER:
        return int(value) if value.is_integer() else None
    return value


def _range_problem(kind: str, item: Mapping[str, Any]) -> str | None:
    name = item.get("Name")
    if kind == CATEGORICAL:
        values = item.get("Values") or []
        if len(set(values)) != len(values):
            return f"The categorical range {name} lists a value twice."
        return None
    low, high = _number(item.get("MinValue"), kind), _number(item.get("MaxValue"), kind)
    word = "a whole number" if kind == INTEGER else "a number"
    for bound, value in (("MinValue", low), ("MaxValue", high)):
        if value is None:
            return (f"The {bound} of the {kind} range {name} ({item.get(bound)!r}) is not"
                    f" {word}.")
    if low > high:
        return f"The MinValue of the {kind} range {name} must not be greater than its MaxValue."
    scaling = item.get("ScalingType") or "Auto"
    if scaling == "Logarithmic" and low <= 0:
        return (f"The range {name} uses Logarithmic scaling, which works only for ranges that"
                " have only values greater than 0.")
    if scaling == "ReverseLogarithmic" and not (low >= 0 and high < 1):
        return (f"The range {name} uses ReverseLogarithmic scaling, which works only for ranges"
                " that are entirely within the range 0<=x<1.0.")
    return None


def _ranges_problem(config: Mapping[str, Any], static: Mapping[str, str]) -> str | None:
    ranges = config.get("ParameterRanges") or {}
    names: list[str] = []
    for key, kind in RANGE_LISTS.items():
        for item in ranges.get(key) or []:
            problem_text = _range_problem(kind, item)
            if problem_text:
                return problem_text
            names.append(item.get("Name"))
    if not names:
        return "The tuning job has no hyperparameter ranges to search."
    if len(names) > MAX_RANGES_PER_KIND:
        return (f"The tuning job has {len(names)} hyperparameter ranges; the sum of the ranges"
                f" of all kinds can't exceed {MAX_RANGES_PER_KIND}.")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"The hyperparameter {twice[0]} has more than one range."
    both = sorted(set(names) & set(static))
    if both:
        return (f"The hyperparameter {both[0]} is both tuned and static; give it as one or the"
                " other.")
    return None


def _hyperband_problem(config: Mapping[str, Any], static: Mapping[str, str]) -> str | None:
    if config.get("TrainingJobEarlyStoppingType", "Off") != "Off":
        return ("Because the Hyperband strategy has its own advanced internal early stopping"
                " mechanism, TrainingJobEarlyStoppingType must be OFF to use Hyperband.")
    settings = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
    low, high = settings.get("MinResource"), settings.get("MaxResource")
    if high is None and not any(_number(static.get(k), INTEGER) for k in EPOCH_KEYS):
        return ("HyperbandStrategyConfig is unable to infer a value for MaxResource: give"
                " MaxResource, or a static hyperparameter "
                f"{', '.join(EPOCH_KEYS)}.")
    if low is not None and high is not None and low > high:
        return "HyperbandStrategyConfig MinResource must not be greater than MaxResource."
    return None


def _grid_problem(config: Mapping[str, Any]) -> str | None:
    ranges = config.get("ParameterRanges") or {}
    numeric = [item.get("Name") for key in ("ContinuousParameterRanges",
                                            "IntegerParameterRanges")
               for item in ranges.get(key) or []]
    if numeric:
        return (f"The Grid strategy takes categorical ranges only; {numeric[0]} is not"
                " categorical.")
    combinations = math.prod(len(item.get("Values") or [])
                             for item in ranges.get("CategoricalParameterRanges") or [])
    given = (config.get("ResourceLimits") or {}).get("MaxNumberOfTrainingJobs")
    if given is not None and given != combinations:
        return (f"With the Grid strategy, MaxNumberOfTrainingJobs ({given}) must equal the"
                f" number of distinct categorical combinations ({combinations}), or be left"
                " out.")
    return None


def problem(request: Mapping[str, Any]) -> str | None:
    """Why the service would refuse ``request`` (one that passed the service model's
    checks), in a sentence; None if it would accept it."""
    config = request.get("HyperParameterTuningJobConfig") or {}
    definition = request.get("TrainingJobDefinition")
    if not definition:
        return "A tuning job needs a TrainingJobDefinition (or TrainingJobDefinitions)."
    strategy = config.get("Strategy")
    static = definition.get("StaticHyperParameters") or {}
    if config.get("StrategyConfig") and strategy != "Hyperband":
        return "StrategyConfig should be provided only if Hyperband is the strategy."
    objective = config.get("HyperParameterTuningJobObjective")
    if not objective:
        return "The tuning job needs a HyperParameterTuningJobObjective."
    algorithm = definition.get("AlgorithmSpecification") or {}
    defined = [d.get("Name") for d in algorithm.get("MetricDefinitions") or []]
    if objective.get("MetricName") not in defined:
        return (f"The objective metric {objective.get('MetricName')} is not one of the"
                " MetricDefinitions of the training job definition"
                f" ({', '.join(map(str, defined)) or 'none'}).")
    found = _ranges_problem(config, static)
    if found:
        return found
    if strategy == "Hyperband":
        found = _hyperband_problem(config, static)
    elif strategy == "Grid":
        found = _grid_problem(config)
    if found:
        return found
    limits = config.get("ResourceLimits") or {}
    total, parallel = limits.get("MaxNumberOfTrainingJobs"), limits.get("MaxParallelTrainingJobs")
    if strategy != "Grid" and total is None:
        return (f"sm-pytest's emulator needs ResourceLimits.MaxNumberOfTrainingJobs with the"
                f" {strategy} strategy.")
    if total is not None and parallel is not None and parallel > total:
        return (f"MaxParallelTrainingJobs ({parallel}) must not be greater than"
                f" MaxNumberOfTrainingJobs ({total}).")
    return None


def _spec(config: Mapping[str, Any], count: int) -> TuneSpec:
    ranges = []
    for key, kind in RANGE_LISTS.items():
        for item in (config.get("ParameterRanges") or {}).get(key) or []:
            if kind == CATEGORICAL:
                ranges.append(Range(item["Name"], kind, values=tuple(item["Values"])))
            else:
                ranges.append(Range(item["Name"], kind, min=_number(item["MinValue"], kind),
                                    max=_number(item["MaxValue"], kind),
                                    scaling=item.get("ScalingType") or "Auto"))
    objective = config["HyperParameterTuningJobObjective"]
    limits = config.get("ResourceLimits") or {}
    return TuneSpec(strategy=config["Strategy"], objective_metric=objective["MetricName"],
                    objective_type=objective["Type"], max_jobs=count,
                    max_parallel_jobs=limits.get("MaxParallelTrainingJobs", 1),
                    ranges=tuple(ranges),
                    early_stopping=config.get("TrainingJobEarlyStoppingType", "Off"),
                    random_seed=config.get("RandomSeed"))


def search_points(config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The tuned hyperparameters of every trial, in launch order, as the trial's
    HyperParameters carry them (strings: a categorical value exactly as the request lists
    it, numbers as text). See the module docstring for each strategy."""
    if config["Strategy"] == "Grid":
        points = grid_points(_spec(config, 1))
    else:
        count = config["ResourceLimits"]["MaxNumberOfTrainingJobs"]
        seed = config.get("RandomSeed")
        if seed is None:  # the service draws its own seed; so does each emulated search
            seed = random.SystemRandom().randrange(2**31)
        points = random_points(_spec(config, count), count, seed)
    return [{name: value if isinstance(value, str) else str(value)
             for name, value in point.items()} for point in points]


# --- early stopping --------------------------------------------------------------------------


@dataclass(frozen=True)
class MedianRule:
    """SageMaker's early stopping, as the developer guide states it ("How Early Stopping
    Works"): "Compute the running average of the objective metric for all previous training
    jobs up to the same epoch, and then compute the median of all of the running averages. If
    the value of the objective metric for the current training job is worse (higher when
    minimizing or lower when maximizing the objective metric) than the median value of running
    averages of the objective metric for previous training jobs up to the same epoch,
    SageMaker stops the current training job."

    The previous training jobs are those that completed (a trial stopped early, or still
    running, has no full history to compare with), and at least MEDIAN_RULE_MIN_TRIALS of
    them must have reached the epoch: spec.tuning.median_rule_stops, the very rule the local
    search applies, so that the same file stops the same trials both ways."""

    metric: str
    regex: re.Pattern[str]
    maximize: bool
    #: The fewest epochs before a trial may be stopped (Hyperband's MinResource).
    min_epochs: int = 1

    def value(self, line: str) -> float | None:
        """The objective's value on a log line, read as a metric definition reads it (the
        regex's first group, else its whole match), if it has one."""
        match = self.regex.search(line)
        if not match:
            return None
        try:
            value = float(match.group(1) if self.regex.groups else match.group(0))
        except (ValueError, IndexError):
            return None
        return value if math.isfinite(value) else None

    def stops(self, values: Sequence[float], previous: Sequence[Sequence[float]]) -> bool:
        """Whether a trial whose objective values, epoch by epoch, are ``values`` (its latest
        last) is stopped, given the values of the trials that completed before it."""
        if len(values) < self.min_epochs:
            return False
        return median_rule_stops(values, previous, maximize=self.maximize)


def early_stopping_rule(request: Mapping[str, Any]) -> MedianRule | None:
    """The rule that stops the trials of an accepted CreateHyperParameterTuningJob request
    early (see the module docstring); None when it stops none."""
    config = request["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    if strategy == "Hyperband":
        settings = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
        min_epochs = int(settings.get("MinResource") or 1)
    elif config.get("TrainingJobEarlyStoppingType", "Off") == "Auto":
        min_epochs = 1
    else:
        return None
    objective = config["HyperParameterTuningJobObjective"]
    algorithm = request["TrainingJobDefinition"].get("AlgorithmSpecification") or {}
    regex = next(d["Regex"] for d in algorithm.get("MetricDefinitions") or []
                 if d.get("Name") == objective["MetricName"])  # problem() made sure of it
    return MedianRule(objective["MetricName"], re.compile(regex),
                      objective["Type"] == "Maximize", min_epochs)
