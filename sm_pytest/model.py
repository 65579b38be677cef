"""The records that pass between the layers: what a run gave back (RunResult and its
statuses), and the per-run record (RunRecord) that the tracker, the summary, the plots and
the gate read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.thresholds import Verdict

COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed_out"
STOPPED = "stopped"
# The session was interrupted (Ctrl-C, SIGTERM, SIGHUP) while a local run was in flight.
INTERRUPTED = "interrupted"

# An item's verdict, as stored and shown: its thresholds and baseline held (PASS) or not
# (FAIL), or its runs did not complete and were never judged (ERROR).
PASS = "pass"
FAIL = "fail"
ERROR = "error"


@dataclass
class RunResult:
    status: str  # one of COMPLETED, FAILED, TIMED_OUT, STOPPED, INTERRUPTED
    artifact_dir: Path
    log_path: Path
    model_dir: Path
    final_metrics: dict[str, float] = field(default_factory=dict)
    metric_series: dict[str, list[float]] = field(default_factory=dict)
    failure_reason: str = ""
    exit_code: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    backend: str = "local"
    instance_type: str = "local"
    job_name: str = ""
    billable_seconds: float | None = None
    training_seconds: float | None = None
    spot: bool = False
    # SageMaker warm pools (sagemaker/warm_pools.py). start_seconds: CreationTime to
    # TrainingStartTime. pool_from: the job whose warm pool this one started on ("" for a
    # cold start). pool_after: what became of this job's own pool ("" when it asked for
    # none), and pool_idle_seconds what its idle time billed (instance-seconds); both are
    # final only once the session has released its pools (report/pools.apply).
    start_seconds: float | None = None
    pool_from: str = ""
    pool_after: str = ""
    pool_idle_seconds: int | None = None

    @property
    def spot_saving(self) -> float | None:
        """1 - billable / training time, SageMaker's own measure of what spot saved."""
        if not self.spot or not self.billable_seconds or not self.training_seconds:
            return None
        return 1.0 - self.billable_seconds / self.training_seconds

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = self.duration_s
        data["spot_saving"] = self.spot_saving
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        """Rebuild a RunResult from what ``to_json()`` wrote: paths back to Path, the derived
        keys (duration_s, spot_saving) and any unknown key dropped, since a result.json may
        come from another version. Raises ValueError naming the missing keys when ``data``
        is not such a result."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a result must be a JSON object, not {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = {name for name, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"result is missing {', '.join(missing)}; it was not written by"
                             " RunResult.to_json()")
        values = {}
        for name, value in data.items():
            if name not in fields:
                continue
            # With postponed annotations a field's type is its source text.
            if fields[name].type in ("Path", Path) and value is not None:
                value = Path(value)
            values[name] = value
        values["final_metrics"] = dict(values.get("final_metrics") or {})
        values["metric_series"] = {k: list(v)
                                   for k, v in (values.get("metric_series") or {}).items()}
        return cls(**values)


class RunSetupError(Exception):
    """The run could not be started; phrased for the user."""


class RunInterrupted(KeyboardInterrupt):
    """The session was interrupted while a run was in flight. It carries what the run left
    (an INTERRUPTED result over its log so far) so that the result is saved and recorded on
    the way out; being a KeyboardInterrupt, it still takes pytest's interrupted path."""

    def __init__(self, result: RunResult, results: list[RunResult] | None = None, *,
                 message: str = ""):
        super().__init__(message or result.failure_reason)
        self.result = result
        # With `repeat`: every result of the item so far, this one last (set by the session).
        self.results = list(results) if results is not None else [result]


def interrupted_reason(exc: BaseException) -> str:
    """`exc` is the KeyboardInterrupt: signals.py names the signal in it, Ctrl-C does not."""
    return (f"the session was interrupted ({str(exc) or 'Ctrl-C'}) and the run was stopped;"
            " train.log holds its log up to then")


def never_ran(reason: str, folder: Path, backend: str) -> RunResult:
    """A run that failed before its program started (a local input on S3, a value the
    fingerprint cannot hash): still a row in the summary, with the reason."""
    return RunResult(status=FAILED, artifact_dir=folder, log_path=folder / "train.log",
                     model_dir=folder / "model", failure_reason=reason, backend=backend,
                     instance_type="" if backend != "local" else "local")


def finals_per_metric(results: list[RunResult]) -> dict[str, list[float]]:
    """metric -> the final value of each run (each repeat) that produced it."""
    finals: dict[str, list[float]] = {}
    for result in results:
        for metric, value in result.final_metrics.items():
            finals.setdefault(metric, []).append(value)
    return finals


# -- the per-run record ------------------------------------------------------------------
# What the tracker, the summary, the plots, the gate and junit read about one item. Built in
# the process that ran the item; turned into JSON only to cross from a pytest-xdist worker
# to the controller (RunRecord.to_json / from_json). Paths are kept as text, the form the
# tracking store, the summary and junit show.

CACHED = "cached"  # the status shown for an item whose every repeat came from the run cache


@dataclass
class CheckRecord:
    """One threshold of the experiment, judged."""

    metric: str
    threshold: str  # as written in the YAML, e.g. ">= 0.9"
    actual: float | None  # None: the log had no value for the metric
    passed: bool


@dataclass
class GateRow:
    """One metric compared with its baseline entry (built by gating.gate)."""

    metric: str
    verdict: str  # one of gating.baselines.VERDICTS
    gated: bool  # whether a tolerance made the comparison count
    baseline: float | None
    now: float | None
    delta: float | None
    allowed: float | None
    arrow: str  # the delta as the summary shows it


class GateSummary(Protocol):
    """What the record keeps of an item's baseline comparison (gating.gate.GateOutcome)."""

    message: str
    state: str

    def rows(self) -> list[GateRow]: ...


class RepeatSource(Protocol):
    """What the record keeps of how one repeat was prepared (session.Pending)."""

    run: RunSpec
    fingerprint: str
    parts: dict[str, str]
    cached: RunResult | None
    miss: str

    @property
    def cache_name(self) -> str: ...


@dataclass(kw_only=True)
class TrainingFields:
    """What one training run gave: the item's (aggregated) result, or one repeat's."""

    status: str  # the real status, one of COMPLETED, FAILED, ...; never CACHED
    final_metrics: dict[str, float] = field(default_factory=dict)
    metric_series: dict[str, list[float]] = field(default_factory=dict)
    failure_reason: str = ""
    backend: str = "local"
    instance_type: str = "local"
    job_name: str = ""
    billable_seconds: float | None = None
    spot_saving: float | None = None
    start_seconds: float | None = None  # warm pools: see RunResult
    pool_from: str = ""
    pool_after: str = ""
    pool_idle_seconds: int | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    duration_s: float = 0.0
    artifact_dir: str = ""
    log_path: str = ""
    model_dir: str = ""


def _training(result: RunResult) -> dict[str, Any]:
    """The TrainingFields of `result`, as keyword arguments."""
    return {"status": result.status, "final_metrics": result.final_metrics,
            "metric_series": result.metric_series, "failure_reason": result.failure_reason,
            "backend": result.backend, "instance_type": result.instance_type,
            "job_name": result.job_name, "billable_seconds": result.billable_seconds,
            "spot_saving": result.spot_saving, "start_seconds": result.start_seconds,
            "pool_from": result.pool_from, "pool_after": result.pool_after,
            "pool_idle_seconds": result.pool_idle_seconds, "started_at": result.started_at,
            "ended_at": result.ended_at, "duration_s": result.duration_s,
            "artifact_dir": str(result.artifact_dir), "log_path": str(result.log_path),
            "model_dir": str(result.model_dir)}


@dataclass(kw_only=True)
class RepeatRecord(TrainingFields):
    """One repeat of an item (an item without `repeat` has one)."""

    fingerprint: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    cache_name: str = ""
    cached: bool = False  # taken from the run cache, not trained in this session
    miss: str = ""  # with --sm-reuse: why the run cache had no entry for it
    result_path: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class TrialRecord(TrainingFields):
    """One trial of a `tune:` item's search."""

    number: int  # from 1, in the order the trials started
    values: dict[str, Any] = field(default_factory=dict)  # the point of the tune ranges
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # all it ran with
    objective: float | None = None  # None: it failed, or was stopped early
    best: bool = False
    stopped_early: bool = False


class TrialSource(Protocol):
    """What the record keeps of one trial (backends.local_tuning.Trial)."""

    number: int
    values: dict[str, Any]
    run: RunSpec
    result: RunResult | None
    objective: float | None
    stopped_early: bool


@dataclass(kw_only=True)
class RunRecord(TrainingFields):
    """One item of the session: its run, its result, its verdict and how it was judged."""

    experiment: str
    name: str
    description: str = ""
    path: str = ""
    run_id: str = ""
    order: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    swept: dict[str, Any] = field(default_factory=dict)
    instance_count: int = 1  # hosts the run trained on
    cached: bool = False  # every repeat came from the run cache
    repeats: list[RepeatRecord] = field(default_factory=list)
    repeat_finals: dict[str, list[float]] = field(default_factory=dict)
    fingerprint: str = ""  # the first repeat's
    gate: list[GateRow] = field(default_factory=list)
    gate_message: str = ""
    gate_state: str = ""  # gating.gate's NO_ENTRY, UNGATED or GATED; empty: not compared
    verdict: str = ""  # pass, fail or error
    checks: list[CheckRecord] = field(default_factory=list)
    # A `tune:` item: its objective, and every trial; the item's own fields are its best
    # trial's.
    objective_metric: str = ""
    trials: list[TrialRecord] = field(default_factory=list)

    @classmethod
    def of(cls, run: RunSpec, order: int, result: RunResult, verdict: str,
           verdicts: list[Verdict], *, pending: Sequence[RepeatSource] | None = None,
           results: Sequence[RunResult] | None = None, gate: GateSummary | None = None,
           trials: Sequence[TrialSource] = ()) -> RunRecord:
        """The record of an item: `result` is its (aggregated) result, `results` one per
        repeat, none when the run never started (its repeats have no result). A search:
        `trials`, and `result` its best trial's."""
        pending, results = pending or [], results or []
        if run.tune is not None:
            results = [result]  # the item is judged, gated and saved on its best trial
        repeats = [RepeatRecord(fingerprint=p.fingerprint, parts=p.parts,
                                cache_name=p.cache_name, cached=p.cached is not None,
                                miss=p.miss, result_path=str(r.artifact_dir / "result.json"),
                                hyperparameters=p.run.hyperparameters,
                                **_training(r))
                   for p, r in zip(pending, results, strict=False)]
        return cls(
            experiment=run.experiment, description=run.description, path=str(run.path),
            run_id=run.run_id, name=run.name, order=order,
            hyperparameters=run.hyperparameters, swept=run.swept,
            instance_count=run.instance_count,
            cached=bool(repeats) and all(r.cached for r in repeats), repeats=repeats,
            repeat_finals=finals_per_metric(list(results) or [result]),
            fingerprint=repeats[0].fingerprint if repeats else "",
            gate=gate.rows() if gate is not None else [],
            gate_message=gate.message if gate is not None else "",
            gate_state=gate.state if gate is not None else "",
            verdict=verdict,
            checks=[CheckRecord(v.threshold.metric, v.threshold.text, v.actual, v.passed)
                    for v in verdicts],
            objective_metric=run.tune.objective_metric if run.tune is not None else "",
            trials=_trial_records(trials, run.tune),
            **_training(result))

    @property
    def shown_status(self) -> str:
        """The status a person reads (summary table, junit): CACHED for a reused item."""
        return CACHED if self.cached else self.status

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, for pytest-xdist's report serialisation."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record `to_json()` wrote. Keys this version does not know are dropped: the
        MLflow outbox keeps records on disk across upgrades."""
        values = _known(cls, data)
        values["repeats"] = [RepeatRecord(**_known(RepeatRecord, r))
                             for r in values.get("repeats", [])]
        values["gate"] = [GateRow(**_known(GateRow, g)) for g in values.get("gate", [])]
        values["checks"] = [CheckRecord(**_known(CheckRecord, c))
                            for c in values.get("checks", [])]
        values["trials"] = [TrialRecord(**_known(TrialRecord, t))
                            for t in values.get("trials", [])]
        return cls(**values)


def objective_of(result: RunResult, metric: str) -> float | None:
    """A trial's value of its search's objective: its final `metric`, None if it did not
    complete or has none (a NaN is none: it ranks no trial)."""
    value = result.final_metrics.get(metric) if result.ok else None
    return None if value is None or value != value else float(value)


def _first_best(items: Sequence, value: Callable[[Any], float | None], tune) -> Any:
    """The item with the best value by `tune`'s objective type, the first of equals."""
    best, best_value = None, None
    for item in items:
        current = value(item)
        if current is not None and (best_value is None or tune.better(current, best_value)):
            best, best_value = item, current
    return best


def best_trial_number(trials: Sequence[TrialSource], tune) -> int | None:
    """The number of the trial with the best objective (the first of equals)."""
    best = _first_best(trials, lambda trial: trial.objective, tune)
    return None if best is None else best.number


def best_result(results: Sequence[RunResult], tune) -> RunResult | None:
    """The trial result with the best objective (the first of equals), None if none has one."""
    return _first_best(results, lambda r: objective_of(r, tune.objective_metric), tune)


def _trial_records(trials: Sequence[TrialSource], tune) -> list[TrialRecord]:
    best = best_trial_number(trials, tune) if tune is not None else None
    return [TrialRecord(number=t.number, values=dict(t.values),
                        hyperparameters=t.run.hyperparameters, objective=t.objective,
                        best=t.number == best, stopped_early=t.stopped_early,
                        **_training(t.result))
            for t in trials if t.result is not None]


def _known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}
