"""Live progress of a run: one short line each time its metric definitions match a new value
set (an epoch, say), e.g. `baseline: epoch 2  test_accuracy=0.951  test_loss=0.16  (18 s)`.

Both backends feed it the log line by line as it arrives (the local pipe, the CloudWatch
tail of a SageMaker job), with the same definitions metrics.py applies to the whole log at
the end. Lines are rate-limited per run: at most one every `interval` seconds, the newest
values win, and the last value set is always shown when the run ends.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sm_pytest.spec.metrics import MetricDefinition, compile_definitions, line_values

if TYPE_CHECKING:
    from sm_pytest.spec.experiment_file import RunSpec

INTERVAL_S = 5.0
_EPOCH = re.compile(r"\bepoch\b\s*[=:]?\s*(\d+)", re.IGNORECASE)


class Progress:
    """Thread-safe: a reader thread may feed() while the waiting thread asks due()."""

    def __init__(self, name: str, definitions: Iterable[MetricDefinition], *,
                 show: Iterable[str] = (), interval: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.patterns = compile_definitions(definitions)
        # The metrics the run is judged on come first; the rest follow in definition order.
        wanted = [m for m in show if any(m == n for n, _ in self.patterns)]
        self.order = wanted + [n for n, _ in self.patterns if n not in wanted]
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._latest: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._epoch: str | None = None
        self._fresh = False  # values arrived since the last line shown
        self._shown_at: float | None = None
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        # Matched first, then stored under one lock: a line's value set is seen whole.
        values = line_values(line, self.patterns)
        if not values:
            return
        epoch = _EPOCH.search(line)
        with self._lock:
            for name, value in values:
                self._latest[name] = value
                self._counts[name] = self._counts.get(name, 0) + 1
            if epoch:
                self._epoch = epoch.group(1)
            self._fresh = True

    def due(self) -> str | None:
        """The line to print now, if new values arrived and the last line is old enough."""
        with self._lock:
            now = self.clock()
            if not self._fresh or (self._shown_at is not None
                                   and now - self._shown_at < self.interval):
                return None
            return self._take(now)

    def last(self) -> str | None:
        """At the end of the run: the newest values, unless they were shown already."""
        with self._lock:
            return self._take(self.clock()) if self._fresh else None

    def _take(self, now: float) -> str:
        self._fresh = False
        self._shown_at = now
        # Without an `epoch N` in the log, count value sets: the most matched metric's count.
        step = (f"epoch {self._epoch}" if self._epoch is not None
                else f"step {max(self._counts.values())}")
        values = "  ".join(f"{name}={self._latest[name]:.4g}" for name in self.order
                           if name in self._latest)
        return f"{self.name}: {step}  {values}  ({now - self.started:.0f} s)"


def for_run(run: RunSpec) -> Progress:
    """The progress of one run, its thresholds' metrics shown first. A search's trials run
    side by side under one item: each line names its trial."""
    label = run.name if run.trial_index is None else f"{run.name} trial {run.trial_index}"
    return Progress(label, run.metric_definitions, show=[t.metric for t in run.expect])

