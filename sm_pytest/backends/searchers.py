"""Which trial a local search runs next, and which running trial it stops early.

SageMaker chooses its trials itself; on this machine the same `tune:` block is searched with
the same semantics: Random (seeded) and Grid (every combination) from spec/tuning.py's
points, Bayesian with Optuna's TPE sampler, and Hyperband with TPE and Optuna's Hyperband
pruner on the per-epoch objective values. `early_stopping: Auto` is SageMaker's median rule
(MedianStopping). Optuna (the `[tune]` extra) is imported only for Bayesian and Hyperband.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from sm_pytest.spec.tuning import (
    CATEGORICAL,
    INTEGER,
    TuneSpec,
    grid_points,
    median_rule_stops,
    random_points,
)

TUNE_EXTRA = "pip install 'sm-pytest[tune]'"


class SearchSetupError(Exception):
    """The search cannot run here (Optuna missing); phrased for the user."""


@dataclass
class Suggestion:
    """One point to train, and what the searcher keeps to learn from its outcome."""

    values: dict[str, Any]
    token: Any = None  # an Optuna trial, for the searchers that use one
    steps: list[float] = field(default_factory=list)  # objective values so far, per epoch


class Searcher(Protocol):
    def next(self) -> Suggestion | None:
        """The next point, or None when the search has no more."""
        ...

    def should_stop(self, suggestion: Suggestion, steps: list[float]) -> bool:
        """Whether a running trial with these objective values so far is stopped early."""
        ...

    def done(self, suggestion: Suggestion, objective: float | None, *,
             stopped_early: bool = False) -> None:
        """The trial ended: `objective` is its final value, None if it failed."""
        ...


class MedianStopping:
    """SageMaker's `Auto` early stopping: a trial stops when its objective at epoch k is
    worse than the median of the running averages, up to epoch k, of the trials that
    completed before it."""

    def __init__(self, tune: TuneSpec):
        self.tune = tune
        self.finished: list[list[float]] = []  # each completed trial's per-epoch values

    def should_stop(self, steps: list[float]) -> bool:
        return median_rule_stops(steps, self.finished, maximize=self.tune.maximize)

    def completed(self, steps: list[float]) -> None:
        if steps:
            self.finished.append(list(steps))


class PointSearcher:
    """Random and Grid: the points are known before the first trial."""

    def __init__(self, tune: TuneSpec, points: list[dict[str, Any]]):
        self.points = list(points)
        self.median = MedianStopping(tune) if tune.early_stopping == "Auto" else None

    def next(self) -> Suggestion | None:
        return Suggestion(self.points.pop(0)) if self.points else None

    def should_stop(self, suggestion: Suggestion, steps: list[float]) -> bool:
        return self.median is not None and self.median.should_stop(steps)

    def done(self, suggestion: Suggestion, objective: float | None, *,
             stopped_early: bool = False) -> None:
        if self.median is not None and objective is not None and not stopped_early:
            self.median.completed(suggestion.steps)


class OptunaSearcher:
    """Bayesian (TPE) and Hyperband (TPE with Optuna's Hyperband pruner), one Optuna trial
    per training. Several are asked for before any is told when trials run side by side:
    TPE's constant liar keeps them apart."""

    def __init__(self, tune: TuneSpec, *, seed: int | None):
        try:
            import optuna
        except ImportError:
            raise SearchSetupError(f"strategy {tune.strategy} runs locally with Optuna:"
                                   f" {TUNE_EXTRA}") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.tune = tune
        self.left = tune.max_jobs
        pruner = (optuna.pruners.HyperbandPruner() if tune.strategy == "Hyperband"
                  else optuna.pruners.NopPruner())
        self.study = optuna.create_study(
            direction="maximize" if tune.maximize else "minimize", pruner=pruner,
            # TPE samples at random until n_startup_trials have ended (10 by default): a
            # third of the budget, so that a search of 8 trials is not random throughout.
            sampler=optuna.samplers.TPESampler(
                seed=seed, constant_liar=True,
                n_startup_trials=min(10, max(1, tune.max_jobs // 3))))
        self.median = MedianStopping(tune) if tune.early_stopping == "Auto" else None

    def next(self) -> Suggestion | None:
        if self.left <= 0:
            return None
        self.left -= 1
        trial = self.study.ask()
        return Suggestion({r.name: _suggest(trial, r) for r in self.tune.ranges}, token=trial)

    def should_stop(self, suggestion: Suggestion, steps: list[float]) -> bool:
        trial = suggestion.token
        for step in range(len(suggestion.steps), len(steps)):
            trial.report(steps[step], step)
        if self.median is not None and self.median.should_stop(steps):
            return True
        return bool(steps) and trial.should_prune()

    def done(self, suggestion: Suggestion, objective: float | None, *,
             stopped_early: bool = False) -> None:
        state = self.optuna.trial.TrialState
        if stopped_early:
            self.study.tell(suggestion.token, state=state.PRUNED)
        elif objective is None or math.isnan(objective):
            self.study.tell(suggestion.token, state=state.FAIL)
        else:
            self.study.tell(suggestion.token, objective)
            if self.median is not None:
                self.median.completed(suggestion.steps)


def _suggest(trial, rng) -> Any:
    """One range's value from an Optuna trial, with SageMaker's scaling."""
    if rng.kind == CATEGORICAL:
        return trial.suggest_categorical(rng.name, list(rng.values))
    if rng.kind == INTEGER:
        return trial.suggest_int(rng.name, int(rng.min), int(rng.max),
                                 log=rng.scaling == "Logarithmic")
    if rng.scaling == "ReverseLogarithmic":
        # Dense near max: 1 - x is log-uniform.
        return 1.0 - trial.suggest_float(f"{rng.name} (1 - value)", 1.0 - rng.max,
                                         1.0 - rng.min, log=True)
    return trial.suggest_float(rng.name, float(rng.min), float(rng.max),
                               log=rng.scaling == "Logarithmic")


def searcher_for(tune: TuneSpec) -> Searcher:
    """The searcher of `tune`'s strategy, seeded with its random_seed."""
    if tune.strategy == "Grid":
        return PointSearcher(tune, grid_points(tune)[:tune.max_jobs])
    if tune.strategy == "Random":
        return PointSearcher(tune, random_points(tune, tune.max_jobs, tune.random_seed))
    return OptunaSearcher(tune, seed=tune.random_seed)
