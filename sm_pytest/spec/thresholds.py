"""Thresholds on final metric values: parsed from a small grammar, never eval'd.

Accepted forms (one string per metric):
    ">= 0.95"   "> 0.9"   "<= 0.25"   "< 0.25"   "== 10"
    "0.90..0.99"            an inclusive range
    ">= 0.9, < 1.0"         several conditions, all of which must hold
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

_OPERATORS = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"^\s*(>=|<=|==|>|<)\s*({_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*$")

FORMS_HINT = "write it as '>= 0.95', '< 0.25', '== 10' or a range '0.90..0.99'"


class ThresholdSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        return _OPERATORS[self.op](value, self.bound)


@dataclass(frozen=True)
class Threshold:
    metric: str
    text: str
    conditions: tuple[Condition, ...]

    def holds(self, value: float | None) -> bool:
        return value is not None and all(c.holds(value) for c in self.conditions)


def parse(metric: str, text: object) -> Threshold:
    if isinstance(text, bool) or not isinstance(text, str):
        raise ThresholdSyntaxError(
            f"threshold for {metric!r} must be a quoted string, got {text!r}; {FORMS_HINT}"
        )
    conditions: list[Condition] = []
    for part in text.split(","):
        comparison = _COMPARISON.match(part)
        span = _RANGE.match(part)
        if comparison:
            conditions.append(Condition(comparison.group(1), float(comparison.group(2))))
        elif span:
            low, high = float(span.group(1)), float(span.group(2))
            if low > high:
                raise ThresholdSyntaxError(
                    f"range {part.strip()!r} for {metric!r} is empty: its lower bound is above"
                    " its upper bound"
                )
            conditions += [Condition(">=", low), Condition("<=", high)]
        else:
            raise ThresholdSyntaxError(
                f"cannot parse threshold {part.strip()!r} for {metric!r}; {FORMS_HINT}"
            )
    return Threshold(metric, text.strip(), tuple(conditions))


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    actual: float | None

    @property
    def passed(self) -> bool:
        return self.threshold.holds(self.actual)


def evaluate(thresholds: tuple[Threshold, ...], final: dict[str, float]) -> list[Verdict]:
    return [Verdict(t, final.get(t.metric)) for t in thresholds]
