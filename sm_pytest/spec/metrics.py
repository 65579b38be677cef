"""Metric extraction from training logs, the way SageMaker applies metric definitions.

SageMaker scans the job's log with each definition's regex and takes the first capture group
as the value. We do the same to the local log, so one set of definitions serves both backends.
The final value of a metric is its last match; the whole series is kept for curves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    regex: str

    def compiled(self) -> re.Pattern:
        return re.compile(self.regex)


def regex_problem(regex: str) -> str | None:
    """Why a metric regex is unusable, or None if it is fine."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        return f"it is not a valid regular expression ({exc})"
    if pattern.groups < 1:
        return "it needs one capture group around the number, e.g. 'loss=([0-9.eE+-]+)'"
    return None


def extract(
    lines: Iterable[str], definitions: Iterable[MetricDefinition]
) -> dict[str, list[float]]:
    """Every value each definition matches, in log order."""
    patterns = compile_definitions(definitions)
    series: dict[str, list[float]] = {name: [] for name, _ in patterns}
    for line in lines:
        for name, value in line_values(line, patterns):
            series[name].append(value)
    return series


def compile_definitions(definitions: Iterable[MetricDefinition]) -> list[tuple[str, re.Pattern]]:
    return [(d.name, d.compiled()) for d in definitions]


def line_values(line: str, patterns: list[tuple[str, re.Pattern]]) -> list[tuple[str, float]]:
    """(metric, value) of every match in one log line, in definition order. NaN is kept: a
    diverged loss must fail its threshold, not fall back to an earlier value."""
    values = []
    for name, pattern in patterns:
        for match in pattern.finditer(line):
            try:
                values.append((name, float(match.group(1))))
            except (TypeError, ValueError):
                continue
    return values


def final_values(series: dict[str, list[float]]) -> dict[str, float]:
    return {name: values[-1] for name, values in series.items() if values}
