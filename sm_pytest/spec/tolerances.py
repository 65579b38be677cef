"""Regression tolerances per metric, and repeats over seeds, as declared in YAML.

    tolerances:
      test_accuracy: {direction: higher, max_drop: 0.01}     # absolute
      test_loss: {direction: lower, max_drop: "5%"}          # relative to the baseline value
      train_loss: {max_drop: 0.05, k: 3}                     # direction guessed from the name
    repeat: 3                # or {count: 3, seed: seed}

A metric may get worse than its baseline by `max_drop` (or by `k` standard errors when runs are
repeated, whichever is larger) before its run fails. Every mistake is a ToleranceError carrying
the key path of the offending value, so that the caller can point at its line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sm_pytest.messages import suggest, type_name

DIRECTIONS = ("higher", "lower")
DEFAULT_K = 2.0
MAX_REPEAT = 20
DEFAULT_SEED_KEY = "seed"

FIELDS = {
    "direction": "higher or lower: which way is better",
    "max_drop": "how much worse the metric may get: 0.01 (absolute) or '2%' (relative)",
    "k": "the multiple of the standard error allowed when runs are repeated (default 2)",
}
REPEAT_FIELDS = {
    "count": "how many times to run, with seeds seed, seed+1, ...",
    "seed": "the name of the hyperparameter that holds the seed (default seed)",
}
MAX_DROP_HINT = "write max_drop: 0.01 for an absolute drop or max_drop: '2%' for a relative one"

# Rules for guessing which way is better from a metric's name, first match wins: a substring
# of the lower-cased name, or a whole word of it (words are split on anything but letters and
# digits). Throughput comes first because "samples_per_second" also contains "second".
DEFAULT_DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("substring", "per_second", "higher"),
    ("substring", "per_sec", "higher"),
    ("substring", "throughput", "higher"),
    ("substring", "loss", "lower"),
    ("substring", "error", "lower"),
    ("substring", "time", "lower"),
    ("substring", "second", "lower"),
    ("substring", "latency", "lower"),
    ("substring", "perplexity", "lower"),
    ("word", "err", "lower"),
    ("word", "mse", "lower"),
    ("word", "mae", "lower"),
    ("word", "rmse", "lower"),
    ("substring", "accuracy", "higher"),
    ("substring", "f1", "higher"),
    ("substring", "auc", "higher"),
    ("substring", "precision", "higher"),
    ("substring", "recall", "higher"),
    ("word", "acc", "higher"),
    ("word", "iou", "higher"),
    ("word", "bleu", "higher"),
)

_NUMBER = r"\+?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PERCENT = re.compile(rf"^\s*(-?)\s*({_NUMBER})\s*%\s*$")
_SEED_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_WORD = re.compile(r"[^a-z0-9]+")


class ToleranceError(ValueError):
    """A mistake in `tolerances:` or `repeat:`, phrased for the user.

    `key_path` leads from the top of the YAML document to the offending value, e.g.
    ("tolerances", "test_loss", "max_drop"); `message` says what is wrong and what to write.
    """

    def __init__(self, key_path: tuple[Any, ...], message: str):
        self.key_path = tuple(key_path)
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Tolerance:
    metric: str
    direction: str  # "higher" or "lower": which way is better
    max_drop: float  # absolute, or a fraction of the baseline value when relative (0.05 = 5%)
    relative: bool
    k: float = DEFAULT_K

    def allowed(self, baseline: float, sigma: float = 0.0) -> float:
        """How much worse than `baseline` the metric may get: the declared drop, or k·σ when
        that is larger (σ is the standard error of the difference of the means)."""
        declared = self.max_drop * abs(baseline) if self.relative else self.max_drop
        return max(declared, self.k * sigma)

    @property
    def max_drop_text(self) -> str:
        return f"{self.max_drop * 100:g}%" if self.relative else f"{self.max_drop:g}"

    def __str__(self) -> str:
        return f"{self.direction} is better, max_drop {self.max_drop_text}, k {self.k:g}"


@dataclass(frozen=True)
class Repeat:
    count: int
    seed_key: str = DEFAULT_SEED_KEY

    def seeds(self, first: int) -> list[int]:
        """The seeds of the repeats: first, first+1, ..."""
        return [first + i for i in range(self.count)]


def guess_direction(metric: str) -> str | None:
    """'lower' for names like loss, error, time or seconds; 'higher' for accuracy, f1, auc,
    precision, recall or samples_per_second; None when the name says nothing."""
    name = str(metric).lower()
    words = set(_WORD.split(name))
    for kind, pattern, direction in DEFAULT_DIRECTIONS:
        if (pattern in name) if kind == "substring" else (pattern in words):
            return direction
    return None






def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """A YAML number as a finite float, or None (not a number, nan, inf, too large)."""
    if not _is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _direction(where: tuple, metric: str, value: Any) -> str:
    if value in DIRECTIONS:
        return value
    raise ToleranceError(where, f"direction of {metric!r} must be higher or lower, not"
                         f" {value!r}; write direction: higher if a bigger value is better"
                         " (accuracy) or direction: lower if a smaller one is (loss)")


def _max_drop(where: tuple, metric: str, value: Any) -> tuple[float, bool]:
    """(max_drop, relative) from 0.01 or '2%'."""
    if _is_number(value):
        number = _finite(value)
        if number is None:
            raise ToleranceError(where, f"max_drop of {metric!r} must be a finite number;"
                                 f" {MAX_DROP_HINT}")
        if number < 0:
            raise ToleranceError(where, f"max_drop of {metric!r} is negative ({number:g}); it"
                                 " is how much worse the metric may get, so write 0 or more,"
                                 " e.g. max_drop: 0.01")
        return number, False
    if isinstance(value, str):
        percent = _PERCENT.match(value)
        if percent:
            if percent.group(1):
                raise ToleranceError(where, f"max_drop of {metric!r} is negative ({value!r});"
                                     " it is how much worse the metric may get, so write 0% or"
                                     " more, e.g. max_drop: '2%'")
            fraction = float(percent.group(2)) / 100
            if math.isinf(fraction):
                raise ToleranceError(where, f"max_drop of {metric!r} is too large ({value!r});"
                                     f" {MAX_DROP_HINT}")
            return fraction, True
        try:
            quoted = float(value)
        except ValueError:
            quoted = math.nan
        if quoted < 0:
            raise ToleranceError(where, f"max_drop of {metric!r} is negative ({value!r}); it is"
                                 " how much worse the metric may get, so write 0 or more,"
                                 " e.g. max_drop: 0.01")
        if not math.isfinite(quoted):
            raise ToleranceError(where, f"cannot read max_drop {value!r} of {metric!r};"
                                 f" {MAX_DROP_HINT}")
        raise ToleranceError(where, f"max_drop {value!r} of {metric!r} is a quoted number"
                             f" without '%'; write max_drop: {value.strip()} (unquoted) for an"
                             f" absolute drop or max_drop: '{value.strip()}%' for a relative one")
    raise ToleranceError(where, f"max_drop of {metric!r} must be a number or a percent, not"
                         f" {type_name(value)}; {MAX_DROP_HINT}")


def _k(where: tuple, metric: str, value: Any) -> float:
    number = _finite(value)
    if number is None:
        raise ToleranceError(where, f"k of {metric!r} must be a number such as 2 (the multiple"
                             f" of the standard error allowed with repeats), not {value!r}")
    if number <= 0:
        raise ToleranceError(where, f"k of {metric!r} must be above 0 ({number:g} given); write"
                             " k: 2, or leave k out for the default 2")
    return number


def _entry(metric: str, entry: Any, default: Tolerance | None) -> Tolerance:
    where = ("tolerances", metric)
    if entry is None:  # `test_accuracy:` with nothing after it: the defaults as they are
        entry = {}
    if not isinstance(entry, dict):
        raise ToleranceError(where, f"the tolerance of {metric!r} must be a mapping such as"
                             f" {{direction: higher, max_drop: 0.01}}, not {type_name(entry)}")
    for key in entry:
        if key not in FIELDS:
            raise ToleranceError((*where, key), f"unknown field {key!r} in the tolerance of"
                                 f" {metric!r}: {suggest(key, FIELDS, 'fields')}")
    direction = default.direction if default else None
    max_drop = (default.max_drop, default.relative) if default else None
    k = default.k if default else DEFAULT_K
    if "direction" in entry:
        direction = _direction((*where, "direction"), metric, entry["direction"])
    if "max_drop" in entry:
        max_drop = _max_drop((*where, "max_drop"), metric, entry["max_drop"])
    if "k" in entry:
        k = _k((*where, "k"), metric, entry["k"])
    if max_drop is None:
        raise ToleranceError(where, f"the tolerance of {metric!r} has no max_drop;"
                             f" {MAX_DROP_HINT}")
    if direction is None:
        direction = guess_direction(metric)
    if direction is None:
        raise ToleranceError(where, f"cannot tell from its name whether a higher or a lower"
                             f" {metric!r} is better; add direction: higher or direction: lower")
    return Tolerance(metric, direction, max_drop[0], max_drop[1], k)


def parse_tolerances(raw: object, *,
                     defaults: dict[str, Tolerance] | None = None) -> dict[str, Tolerance]:
    """The `tolerances:` mapping (metric -> fields), merged per metric and per field over
    `defaults` (the base config's, already parsed). Metrics only in `defaults` are kept."""
    merged = dict(defaults or {})
    if raw is None:
        return merged
    if not isinstance(raw, dict):
        raise ToleranceError(("tolerances",), "'tolerances' must be a mapping of metric name to"
                             " its tolerance, e.g. test_accuracy: {direction: higher, max_drop:"
                             f" 0.01}}; not {type_name(raw)}")
    for metric, entry in raw.items():
        if not isinstance(metric, str) or not metric:
            raise ToleranceError(("tolerances", metric), f"metric name {metric!r} must be a"
                                 " string naming a metric of metric_definitions")
        default = merged.get(metric)
        merged[metric] = _entry(metric, entry, default)
    return merged


def _count(where: tuple, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToleranceError(where, f"the repeat count must be a whole number from 1 to"
                             f" {MAX_REPEAT}, e.g. repeat: 3; got {value!r}")
    if not 1 <= value <= MAX_REPEAT:
        raise ToleranceError(where, f"the repeat count must be from 1 to {MAX_REPEAT}, not"
                             f" {value}; each repeat is a full training run")
    return value


def parse_repeat(raw: object) -> Repeat | None:
    """`repeat: 3` or `repeat: {count: 3, seed: seed}`; None when `repeat` is absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return Repeat(_count(("repeat",), raw))
    for key in raw:
        if key not in REPEAT_FIELDS:
            raise ToleranceError(("repeat", key), f"unknown field {key!r} in 'repeat':"
                                 f" {suggest(key, REPEAT_FIELDS, 'fields')}")
    if "count" not in raw:
        raise ToleranceError(("repeat",), "'repeat' needs a count, e.g. repeat: {count: 3,"
                             " seed: seed}")
    count = _count(("repeat", "count"), raw["count"])
    seed_key = raw.get("seed", DEFAULT_SEED_KEY)
    if not isinstance(seed_key, str) or not _SEED_KEY.match(seed_key):
        raise ToleranceError(("repeat", "seed"), f"the seed of 'repeat' names the hyperparameter"
                             f" that holds the seed, so it must be a name such as seed, not"
                             f" {seed_key!r}")
    return Repeat(count, seed_key)

