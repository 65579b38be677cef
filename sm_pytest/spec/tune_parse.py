"""The `tune:` block of an experiment file, read into a TuneSpec with SageMaker's own rules.

The rules are the service's (the CreateHyperParameterTuningJob request shapes and the
developer guide's "Define Hyperparameter Ranges"), checked here so that a search the service
would refuse fails at collection, on its line, instead of minutes later as a
ValidationException. What needs the rest of the file (the metric definitions, the matrix,
`repeat`) is checked by the experiment file loader.
"""

from __future__ import annotations

import math
from typing import Any

from sm_pytest.messages import suggest, type_name
from sm_pytest.spec.tuning import (
    CATEGORICAL,
    CONTINUOUS,
    EARLY_STOPPING,
    INTEGER,
    MAX_RANGES,
    MAX_VALUES_PER_CATEGORICAL,
    OBJECTIVE_TYPES,
    SCALINGS,
    STRATEGIES,
    Range,
    TuneSpec,
)
from sm_pytest.spec.yamlsafe import KeyPath, Located

TUNE_KEYS = {
    "strategy": "Bayesian, Random, Hyperband or Grid (default Bayesian, as in the SageMaker SDK)",
    "objective": "the metric to optimize, e.g. {metric: test_accuracy, type: Maximize}",
    "max_jobs": "how many trials to run in all, e.g. 12",
    "max_parallel_jobs": "how many trials run at once, e.g. 3 (default 1)",
    "ranges": "hyperparameter name -> {min: ..., max: ...} or {values: [...]}",
    "early_stopping": "Off or Auto (default Off)",
    "random_seed": "a whole number that makes the search reproducible, e.g. 7",
}
OBJECTIVE_KEYS = {
    "metric": "the name of a metric definition, e.g. test_accuracy",
    "type": "Maximize or Minimize",
}
RANGE_KEYS = {
    "min": "the lowest value searched",
    "max": "the highest value searched",
    "scaling": "Auto, Linear, Logarithmic or ReverseLogarithmic (default Auto)",
    "type": "integer for whole numbers (default continuous)",
    "values": "the list of choices of a categorical range, e.g. [32, 64, 128]",
}
NUMERIC_TYPES = (CONTINUOUS, INTEGER)
# The developer guide's "Resource Limits for Automatic Model Tuning": "Number of training jobs
# per hyperparameter tuning job", by strategy: 750 for Bayesian, Hyperband and Grid ("either
# specified explicitly or inferred from the search space"), not adjustable; 750 for Random,
# which a service quota increase can raise to 10000. The service model's
# MaxNumberOfTrainingJobs sets no maximum (only a minimum of 1).
DEFAULT_MAX_TRIALS = 750
MAX_RANDOM_TRIALS = 10000
# CategoricalParameterRange's values are strings of at most 256 characters (service model).
MAX_VALUE_CHARS = 256
RANGE_EXAMPLE = "{min: 0.01, max: 1.0} for numbers, or {values: [32, 64]} for a list of choices"


def parse_tune(doc: Located, key_path: KeyPath = ("tune",)) -> TuneSpec:
    """The validated search of `doc`'s `tune:` block; a YamlError on the offending line."""
    raw = _mapping(doc, key_path, TUNE_KEYS, "tune", "the search, e.g. {strategy: Random,"
                   " objective: {metric: accuracy, type: Maximize}, max_jobs: 8, ranges: ...}")
    strategy = _choice(doc, (*key_path, "strategy"), raw.get("strategy", "Bayesian"),
                       STRATEGIES, "strategy", "strategies")
    metric, objective_type = _objective(doc, (*key_path, "objective"), raw)
    ranges = _ranges(doc, (*key_path, "ranges"), raw)
    early_stopping = _early_stopping(doc, (*key_path, "early_stopping"), raw)
    if strategy == "Hyperband" and early_stopping != "Off":
        raise doc.error((*key_path, "early_stopping"), "Hyperband stops weak trials itself,"
                        " so SageMaker requires early_stopping: Off with it; remove"
                        " early_stopping, or use strategy Bayesian or Random")
    max_parallel = _whole(doc, (*key_path, "max_parallel_jobs"),
                          raw.get("max_parallel_jobs", 1), "max_parallel_jobs", 1)
    if strategy == "Grid":
        max_jobs = _grid_jobs(doc, key_path, raw, ranges)
    elif "max_jobs" not in raw:
        raise doc.error(key_path, f"the {strategy} search needs max_jobs, the number of"
                        " trials to run in all, e.g. max_jobs: 12")
    else:
        max_jobs = _whole(doc, (*key_path, "max_jobs"), raw["max_jobs"], "max_jobs", 1)
        _check_max_jobs(doc, (*key_path, "max_jobs"), strategy, max_jobs)
    if max_parallel > max_jobs:
        raise doc.error((*key_path, "max_parallel_jobs"), f"max_parallel_jobs ({max_parallel})"
                        f" is more than the {max_jobs} trial(s) of the search, as SageMaker"
                        " refuses; lower max_parallel_jobs to at most max_jobs")
    seed = raw.get("random_seed")
    if seed is not None:
        seed = _whole(doc, (*key_path, "random_seed"), seed, "random_seed", 0)
    return TuneSpec(strategy=strategy, objective_metric=metric, objective_type=objective_type,
                    max_jobs=max_jobs, max_parallel_jobs=max_parallel, ranges=ranges,
                    early_stopping=early_stopping, random_seed=seed)


def _mapping(doc: Located, where: KeyPath, schema: dict[str, str], name: str,
             example: str) -> dict:
    raw = doc.value
    for key in where:
        raw = raw[key]
    if not isinstance(raw, dict) or not raw:
        got = "empty" if raw in (None, {}) else type_name(raw)
        raise doc.error(where, f"{name!r} must be a mapping of {example}; got {got}")
    for key in raw:
        if key not in schema:
            raise doc.error((*where, key), f"unknown key {key!r} in {name}: {suggest(key, schema)}")
    return raw


def _choice(doc: Located, where: KeyPath, value: Any, allowed: tuple[str, ...], what: str,
            plural: str) -> str:
    if value in allowed and isinstance(value, str):
        return value
    by_case = {name.lower(): name for name in allowed}
    if isinstance(value, str) and value.lower() in by_case:
        raise doc.error(where, f"{what} {value!r} is spelled {by_case[value.lower()]!r} in"
                        " SageMaker, whose names are case-sensitive")
    raise doc.error(where, f"unknown {what} {value!r}: {suggest(value, allowed, plural)}")


def _whole(doc: Located, where: KeyPath, value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise doc.error(where, f"{name} must be a whole number of at least {least}, not"
                        f" {value!r}")
    return value


def _objective(doc: Located, where: KeyPath, raw: dict) -> tuple[str, str]:
    if "objective" not in raw:
        raise doc.error(where[:-1], "the search needs an objective, the metric it optimizes,"
                        " e.g. objective: {metric: test_accuracy, type: Maximize}")
    objective = _mapping(doc, where, OBJECTIVE_KEYS, "objective",
                         "metric and type, e.g. {metric: test_accuracy, type: Maximize}")
    metric = objective.get("metric")
    if not isinstance(metric, str) or not metric:
        raise doc.error((*where, "metric") if "metric" in objective else where,
                        "the objective needs metric: the name of a metric definition, e.g."
                        " metric: test_accuracy")
    if "type" not in objective:
        raise doc.error(where, f"the objective needs type: Maximize or Minimize (is a higher"
                        f" {metric} better, or a lower one?)")
    kind = _choice(doc, (*where, "type"), objective["type"], OBJECTIVE_TYPES,
                   "objective type", "objective types")
    return metric, kind


def _early_stopping(doc: Located, where: KeyPath, raw: dict) -> str:
    value = raw.get("early_stopping", "Off")
    if value is False:
        # YAML 1.1 reads a bare Off as false; the user wrote SageMaker's value.
        return "Off"
    if value is True:
        raise doc.error(where, "early_stopping must be Auto or Off (YAML reads a bare"
                        " yes/on/true as true); write early_stopping: Auto")
    return _choice(doc, where, value, EARLY_STOPPING, "early_stopping value",
                   "early_stopping values")


def _ranges(doc: Located, where: KeyPath, raw: dict) -> tuple[Range, ...]:
    if "ranges" not in raw:
        raise doc.error(where[:-1], "the search needs ranges: the hyperparameters it varies,"
                        f" each {RANGE_EXAMPLE}")
    block = raw["ranges"]
    if not isinstance(block, dict) or not block:
        got = "empty" if block in (None, {}) else type_name(block)
        raise doc.error(where, "'ranges' must be a mapping of hyperparameter name to a range,"
                        f" each {RANGE_EXAMPLE}; got {got}")
    if len(block) > MAX_RANGES:
        raise doc.error(where, f"the search has {len(block)} ranges; SageMaker searches at"
                        f" most {MAX_RANGES} (continuous, integer and categorical together):"
                        " fix the rest as hyperparameters")
    return tuple(_range(doc, (*where, name), name, spec) for name, spec in block.items())


def _range(doc: Located, where: KeyPath, name: Any, raw: Any) -> Range:
    if not isinstance(raw, dict) or not raw:
        got = "empty" if raw in (None, {}) else type_name(raw)
        raise doc.error(where, f"range {name!r} must be a mapping, {RANGE_EXAMPLE}; got {got}")
    for key in raw:
        if key not in RANGE_KEYS:
            raise doc.error((*where, key), f"unknown key {key!r} in range {name!r}:"
                            f" {suggest(key, RANGE_KEYS)}")
    line = doc.line_of(where)
    if "values" in raw:
        extra = [key for key in raw if key != "values"]
        if extra:
            raise doc.error((*where, extra[0]), f"range {name!r} lists values, so it is"
                            f" categorical and takes no {', '.join(extra)}; remove"
                            f" {'them' if len(extra) > 1 else 'it'}, or give min and max"
                            " instead of values")
        return Range(name, CATEGORICAL, values=_values(doc, (*where, "values"), name,
                                                       raw["values"]), line=line)
    if "min" not in raw or "max" not in raw:
        raise doc.error(where, f"range {name!r} needs both min and max (or values: [...] for"
                        " a list of choices)")
    kind = raw.get("type", CONTINUOUS)
    if kind not in NUMERIC_TYPES:
        raise doc.error((*where, "type"), f"range {name!r} has type {kind!r}; write type:"
                        " integer for whole numbers, or leave type out for a continuous range"
                        " (a categorical range is written with values: [...])")
    low = _bound(doc, (*where, "min"), name, "min", raw["min"], kind)
    high = _bound(doc, (*where, "max"), name, "max", raw["max"], kind)
    if low >= high:
        raise doc.error((*where, "min"), f"range {name!r} has min {low} and max {high}; min"
                        " must be less than max (for one fixed value, set it under"
                        " hyperparameters instead)")
    scaling = _choice(doc, (*where, "scaling"), raw.get("scaling", "Auto"), SCALINGS,
                      "scaling", "scalings")
    _check_scaling(doc, (*where, "scaling" if "scaling" in raw else "min"), name, kind,
                   scaling, low, high)
    return Range(name, kind, min=low, max=high, scaling=scaling, line=line)


def _bound(doc: Located, where: KeyPath, name: Any, which: str, value: Any,
           kind: str) -> float | int:
    number = value
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 (no dot) as a string; SageMaker takes the bounds as strings too.
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or \
            not math.isfinite(number):
        raise doc.error(where, f"{which} of range {name!r} must be a finite number, not"
                        f" {value!r}")
    if kind == INTEGER:
        if not float(number).is_integer():
            raise doc.error(where, f"range {name!r} is an integer range, so its {which} must"
                            f" be a whole number, not {value!r}; leave out type: integer for"
                            " a continuous range")
        return int(number)
    return number


def _check_scaling(doc: Located, where: KeyPath, name: Any, kind: str, scaling: str,
                   low: float, high: float) -> None:
    if scaling == "Logarithmic" and low <= 0:
        raise doc.error(where, f"range {name!r} has Logarithmic scaling, which SageMaker"
                        f" allows only for values above 0, but its min is {low}; raise min"
                        " above 0, or use Linear scaling")
    if scaling != "ReverseLogarithmic":
        return
    if kind == INTEGER:
        raise doc.error(where, f"range {name!r} is an integer range, and SageMaker allows"
                        " ReverseLogarithmic scaling for continuous ranges only; use Linear or"
                        " Logarithmic")
    if low < 0 or high >= 1:
        raise doc.error(where, f"range {name!r} has ReverseLogarithmic scaling, which"
                        f" SageMaker allows only within 0 <= x < 1, but it spans {low} to"
                        f" {high}; keep min at least 0 and max below 1, or use Linear scaling")


def _values(doc: Located, where: KeyPath, name: Any, values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        got = "an empty list" if values == [] else type_name(values)
        raise doc.error(where, f"values of range {name!r} must be a list of at least one"
                        f" choice, e.g. values: [32, 64]; got {got}")
    if len(values) > MAX_VALUES_PER_CATEGORICAL:
        raise doc.error(where, f"range {name!r} lists {len(values)} values; SageMaker allows"
                        f" at most {MAX_VALUES_PER_CATEGORICAL} per categorical range: use a"
                        " min/max range, or split the search")
    seen: list[str] = []
    for i, value in enumerate(values):
        plain = isinstance(value, (str, int, float)) and not (
            isinstance(value, float) and not math.isfinite(value))
        if not plain:
            what = "an empty value" if value is None else f"{type_name(value)} ({value!r})"
            raise doc.error((*where, i), f"range {name!r} lists {what}; its values must be"
                            " plain strings, numbers or booleans, which SageMaker passes to"
                            " the script as text")
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise doc.error((*where, i), f"a value of range {name!r} is {len(text)}"
                            f" characters long; SageMaker allows at most {MAX_VALUE_CHARS}")
        if text in seen:
            raise doc.error((*where, i), f"range {name!r} lists {value!r} twice; each value"
                            " must appear once")
        seen.append(text)
    return tuple(values)


def _check_max_jobs(doc: Located, where: KeyPath, strategy: str, max_jobs: int) -> None:
    """SageMaker's ceiling on the trials of one tuning job (see DEFAULT_MAX_TRIALS), checked
    on every path: the same file must run on SageMaker too."""
    if strategy == "Random" and DEFAULT_MAX_TRIALS < max_jobs <= MAX_RANDOM_TRIALS:
        return  # allowed with a quota increase; without one, SageMaker's refusal says so
    ceiling = MAX_RANDOM_TRIALS if strategy == "Random" else DEFAULT_MAX_TRIALS
    if max_jobs <= ceiling:
        return
    if strategy == "Random":
        why = (f"SageMaker runs at most {MAX_RANDOM_TRIALS} trials in one Random search (its"
               f" default quota is {DEFAULT_MAX_TRIALS}, and an increase goes no higher)")
    else:
        why = (f"SageMaker runs at most {DEFAULT_MAX_TRIALS} trials in one {strategy} search,"
               " a limit no quota increase raises")
    raise doc.error(where, f"max_jobs is {max_jobs}, but {why}; the same file must run there"
                    f" too, so it is refused here as well: lower max_jobs to {ceiling} or"
                    " less, or split the search into several tune: files")


def _grid_jobs(doc: Located, key_path: KeyPath, raw: dict, ranges: tuple[Range, ...]) -> int:
    """Grid runs each combination of its categorical ranges once: SageMaker derives the
    number of trials from them and refuses a max_jobs that differs."""
    for spec in ranges:
        if spec.kind != CATEGORICAL:
            raise doc.error((*key_path, "ranges", spec.name), f"range {spec.name!r} is"
                            f" {spec.kind}, but a Grid search takes categorical ranges only,"
                            f" as SageMaker requires; list its values, e.g. {spec.name}:"
                            f" {{values: [{spec.min}, {spec.max}]}}, or use strategy Random")
    size = math.prod(len(spec.values) for spec in ranges)
    if size > DEFAULT_MAX_TRIALS:
        raise doc.error((*key_path, "ranges"), f"this Grid search has {size} combinations of"
                        f" its ranges, but SageMaker runs at most {DEFAULT_MAX_TRIALS} trials"
                        " in one Grid search (counted from the ranges), a limit no quota"
                        " increase raises; the same file must run there too, so it is refused"
                        " here as well: list fewer values, or use strategy Random with"
                        f" max_jobs: {DEFAULT_MAX_TRIALS} or less")
    if "max_jobs" in raw:
        max_jobs = _whole(doc, (*key_path, "max_jobs"), raw["max_jobs"], "max_jobs", 1)
        if max_jobs != size:
            raise doc.error((*key_path, "max_jobs"), f"a Grid search runs every combination"
                            f" of its ranges once, {size} trial(s) here, and SageMaker requires"
                            f" max_jobs to equal that number; set max_jobs: {size} or leave it"
                            f" out (it was {max_jobs})")
    return size
