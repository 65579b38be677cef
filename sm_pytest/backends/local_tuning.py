"""A `tune:` item on this machine: its trials through the local backend, max_parallel_jobs
at a time, each with its share of the cores, chosen and stopped early by a searcher
(searchers.py). Every trial is a run of its own, in its own attempt folder."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.backends import runner
from sm_pytest.backends.local import LocalBackend, thread_share
from sm_pytest.backends.searchers import Searcher, Suggestion, searcher_for
from sm_pytest.model import (
    INTERRUPTED,
    STOPPED,
    RunInterrupted,
    RunResult,
    RunSetupError,
    best_trial_number,
    interrupted_reason,
    never_ran,
    objective_of,
)
from sm_pytest.run import signals
from sm_pytest.run.artifacts import run_dir_of
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.metrics import extract

POLL_S = 0.5  # how often running trials are looked at (their end, their epochs so far)


@dataclass
class Trial:
    """One trial of a search: its number (from 1), point, run and what it gave."""

    number: int
    values: dict[str, Any]
    run: RunSpec
    suggestion: Suggestion
    handle: Any = None
    result: RunResult | None = None
    stopped_early: bool = False
    objective: float | None = None
    steps: list[float] = field(default_factory=list)


def best_trial(trials: list[Trial], run: RunSpec) -> Trial | None:
    """The completed trial with the best objective (the first of equals)."""
    number = best_trial_number(trials, run.tune)
    return None if number is None else trials[number - 1]


def run_search(run: RunSpec, backend: LocalBackend, artifacts_root: Path, *,
               searcher: Searcher | None = None) -> list[Trial]:
    """Every trial of `run`'s search, in the order they started. A Ctrl-C or SIGTERM stops
    the running trials and raises RunInterrupted with every trial's result so far."""
    tune = run.tune
    searcher = searcher or searcher_for(tune)
    backend = trial_backend(backend, tune.max_parallel_jobs)
    definitions = [d for d in run.metric_definitions if d.name == tune.objective_metric]
    trials: list[Trial] = []
    running: list[Trial] = []
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < tune.max_parallel_jobs:
                if signals.received():
                    raise signals.interrupt(signals.received())
                suggestion = searcher.next()
                if suggestion is None:
                    exhausted = True
                    break
                trial = _start(run, len(trials) + 1, suggestion, backend, artifacts_root)
                trials.append(trial)
                if trial.result is None:
                    running.append(trial)
                else:
                    searcher.done(suggestion, None)
            if not running:
                return trials
            with signals.interruptible():
                time.sleep(POLL_S)
            for trial in list(running):
                if _poll(trial, backend, searcher, definitions, tune.objective_metric):
                    running.remove(trial)
    except KeyboardInterrupt as exc:
        with signals.deferred():
            for trial in running:
                backend.stop(trial.handle)
            for trial in running:
                trial.result = dataclasses.replace(
                    _finish(backend, trial), status=INTERRUPTED,
                    failure_reason=interrupted_reason(exc))
                runner.save(trial.result)
        results = [t.result for t in trials if t.result is not None]
        if not results:
            raise
        best = best_trial(trials, run)
        shown = best.result if best is not None else results[-1]
        failure = RunInterrupted(
            dataclasses.replace(shown, status=INTERRUPTED,
                                failure_reason=interrupted_reason(exc)), results,
            message=interrupted_reason(exc))
        failure.trials = trials
        raise failure from None


def trial_backend(backend: LocalBackend, parallel: int) -> LocalBackend:
    """The session's local backend for trials that run `parallel` at a time: they share the
    cores, as runs under pytest-xdist do. The session's backend has the xdist share alone;
    thread_share counts the workers too, and leaves an OMP_NUM_THREADS the user set."""
    inherited = {k: v for k, v in backend.extra_env.items() if k != "OMP_NUM_THREADS"}
    return LocalBackend(echo=backend.echo, progress=backend.progress,
                        extra_env={**inherited, **thread_share(hosts=parallel)})


def _start(run: RunSpec, number: int, suggestion: Suggestion, backend: LocalBackend,
           artifacts_root: Path) -> Trial:
    spec = run.trial(number, suggestion.values)
    trial = Trial(number, suggestion.values, spec, suggestion)
    try:
        trial.handle = runner.submit(spec, backend, artifacts_root)
    except RunSetupError as exc:
        trial.result = never_ran(str(exc), run_dir_of(artifacts_root, spec.experiment,
                                                      spec.folder), backend=backend.name)
    return trial


def _finish(backend: LocalBackend, trial: Trial) -> RunResult:
    try:
        return runner.finish(backend, trial.handle)
    except RunInterrupted as exc:  # a signal while it was being saved
        return exc.result


def _poll(trial: Trial, backend: LocalBackend, searcher: Searcher, definitions,
          metric: str) -> bool:
    """Whether `trial` has ended: by itself, or stopped early by the searcher now."""
    overdue = time.time() >= trial.handle.started_at + trial.run.max_run
    if overdue or backend.finished(trial.handle):  # finish() stops an overdue one
        trial.result = _finish(backend, trial)
        trial.steps = _steps(trial.result.log_path, definitions, metric)
        trial.suggestion.steps = trial.steps
        trial.objective = objective_of(trial.result, metric)
        searcher.done(trial.suggestion, trial.objective)
        return True
    steps = _steps(trial.handle.log_path, definitions, metric)
    if len(steps) <= len(trial.steps):
        return False
    stop = searcher.should_stop(trial.suggestion, steps)
    trial.steps = trial.suggestion.steps = steps
    if not stop:
        return False
    backend.stop(trial.handle)
    ended = _finish(backend, trial)
    trial.stopped_early = True
    trial.result = dataclasses.replace(
        ended, status=STOPPED,
        failure_reason=f"the search stopped it early, after epoch {len(steps)}"
                       f" ({metric} {steps[-1]:.6g})")
    runner.save(trial.result)
    searcher.done(trial.suggestion, None, stopped_early=True)
    return True


def _steps(log_path: Path, definitions, metric: str) -> list[float]:
    """The objective's values in the log so far, one per line that has it (per epoch)."""
    if not definitions or not Path(log_path).is_file():
        return []
    with open(log_path, encoding="utf-8", errors="replace") as log:
        lines = log.readlines()
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # still being written: `accuracy=0.` of 0.93 must not read as 0
    return extract(lines, definitions).get(metric, [])

