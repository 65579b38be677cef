"""A `tune:` block as a CreateHyperParameterTuningJob request, and what its Describe and
ListTrainingJobsForHyperParameterTuningJob answers say: pure functions, checked field by field.

The training job definition is the CreateTrainingJob request that request.build_request makes
for the item, so a trial runs exactly as the item's own job would (script mode, spot,
checkpoints, metric definitions, channels, environment), with these differences, each the
service's or the SDK's:

* No TrainingJobName: the service names each trial ``<tuning job>-<NNN>-<8 hex>``.
* HyperParameters become StaticHyperParameters, less the tuned names (SDK v2
  ``HyperparameterTuner._prepare_static_hyperparameters``). ``sagemaker_job_name`` is the
  tuning job's name, as the SDK sets it (it prepares the estimator with that name).
* No ExperimentConfig: HyperParameterTrainingJobDefinition has none. The service records the
  search in SageMaker Experiments itself, one trial component per training job.
* Tags go on the tuning job, which passes them on to its training jobs.
* Ranges are strings, as the service takes them (SDK v2 ``parameter.py``, ``to_string``):
  continuous and integer bounds as text; categorical values JSON-encoded, as the SDK encodes
  them for a framework estimator (``CategoricalParameter.as_json_range``) and as the static
  hyperparameters are encoded, so the training script gets the value with its YAML type.
* Grid takes categorical ranges only (SageMaker developer guide, "How hyperparameter tuning
  works": grid search), and MaxNumberOfTrainingJobs is left out: the service runs every
  combination.
* Hyperband: StrategyConfig with MinResource 1 and MaxResource the static epochs, the
  number the service would otherwise infer from ``epochs`` and its spellings.

Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sm_pytest.run.contract import JOB_NAME_PARAM, decode_hyperparameters
from sm_pytest.sagemaker.names import MAX_TUNING_JOB_NAME, TUNING_JOB_NAME_PATTERN
from sm_pytest.sagemaker.request import RequestError
from sm_pytest.spec.tuning import CATEGORICAL, CONTINUOUS, INTEGER, Range, TuneSpec

__all__ = [
    "EPOCH_KEYS",
    "MAX_CATEGORICAL_VALUES",
    "TrialOutcome",
    "TuningOutcome",
    "list_trials",
    "trial_number",
    "tuning_outcome",
    "tuning_request",
]

# CreateTrainingJob members and where the tuning request carries each one.
_DEFINITION_KEYS = (
    "AlgorithmSpecification", "RoleArn", "InputDataConfig", "VpcConfig", "OutputDataConfig",
    "ResourceConfig", "StoppingCondition", "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "CheckpointConfig",
    "RetryStrategy", "Environment",
)
_NOT_CARRIED = ("TrainingJobName", "HyperParameters", "Tags", "ExperimentConfig")
# The keys from which the service infers Hyperband's MaxResource (HyperbandStrategyConfig).
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
MAX_CATEGORICAL_VALUES = 30  # ParameterValues: 1-30 values
_RANGE_LISTS = {CONTINUOUS: "ContinuousParameterRanges", INTEGER: "IntegerParameterRanges",
                CATEGORICAL: "CategoricalParameterRanges"}
_TRIAL_NAME = re.compile(r"-(\d{3})-[0-9a-f]{8}$")


# --- the request -----------------------------------------------------------------------------


def _categorical_values(rng: Range) -> list[str]:
    values = [json.dumps(v) for v in rng.values]
    if len(values) > MAX_CATEGORICAL_VALUES:
        raise RequestError(f"range {rng.name!r} has {len(values)} values; SageMaker takes at"
                           f" most {MAX_CATEGORICAL_VALUES} in one categorical range")
    return values


def _parameter_ranges(tune: TuneSpec) -> dict[str, list[dict[str, Any]]]:
    lists: dict[str, list[dict[str, Any]]] = {key: [] for key in _RANGE_LISTS.values()}
    for rng in tune.ranges:
        kind = rng.kind
        if tune.strategy == "Grid" and kind != CATEGORICAL:
            raise RequestError(f"range {rng.name!r} is {kind}; a Grid search takes categorical"
                               " ranges only")
        if kind == CATEGORICAL:
            lists[_RANGE_LISTS[CATEGORICAL]].append(
                {"Name": rng.name, "Values": _categorical_values(rng)})
        else:
            low, high = (int(rng.min), int(rng.max)) if kind == INTEGER else (rng.min, rng.max)
            lists[_RANGE_LISTS[kind]].append({"Name": rng.name, "MinValue": str(low),
                                              "MaxValue": str(high), "ScalingType": rng.scaling})
    return {key: value for key, value in lists.items() if value}


def _hyperband_config(static: Mapping[str, str]) -> dict[str, Any]:
    for key in EPOCH_KEYS:
        if key in static:
            epochs = decode_hyperparameters({key: static[key]})[key]
            if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
                return {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": epochs}}
    raise RequestError("Hyperband needs the number of epochs each trial trains: give a fixed"
                       f" whole-number hyperparameter named one of {', '.join(EPOCH_KEYS)}"
                       " (not one of the tuned ranges)")


def tuning_request(tune: TuneSpec, training_request: Mapping[str, Any], name: str) -> dict:
    """The CreateHyperParameterTuningJob request (PascalCase, as the API takes it) that
    searches ``tune``'s ranges with trials defined by ``training_request`` (what
    request.build_request makes for the item, given ``job_name=name``, so that its checkpoint
    path and ``sagemaker_job_name`` name the search; see the module docstring for what
    changes). ``name`` comes from names.tuning_job_name."""
    if not TUNING_JOB_NAME_PATTERN.fullmatch(name) or len(name) > MAX_TUNING_JOB_NAME:
        raise RequestError(f"tuning job name {name!r} is not a valid SageMaker tuning job name"
                           f" ({MAX_TUNING_JOB_NAME} letters, digits or '-' at most)")
    unknown = sorted(set(training_request) - set(_DEFINITION_KEYS) - set(_NOT_CARRIED))
    if unknown:
        raise RequestError(f"the training job request has {unknown}, which a tuning job's"
                           " training job definition cannot carry")
    algorithm = training_request.get("AlgorithmSpecification") or {}
    defined = [d["Name"] for d in algorithm.get("MetricDefinitions") or []]
    if tune.objective_metric not in defined:
        raise RequestError(f"the objective metric {tune.objective_metric!r} has no metric"
                           f" definition; defined: {', '.join(defined) or 'none'}")

    tuned = {rng.name for rng in tune.ranges}
    static = {key: value for key, value in (training_request.get("HyperParameters") or {}).items()
              if key not in tuned}
    static[JOB_NAME_PARAM] = json.dumps(name)
    definition: dict[str, Any] = {"StaticHyperParameters": static}
    definition.update({key: training_request[key] for key in _DEFINITION_KEYS
                       if key in training_request})
    resources = dict(definition.get("ResourceConfig") or {})
    if resources.pop("KeepAlivePeriodInSeconds", None) is not None:
        # No warm pools for a tuning job's trials: "HPO doesnt seem to support Warmpool
        # clusters despite the parameter being in resourceconfig. The server always sets
        # KeepAlivePeriodInSeconds to nil" (aws-controllers-k8s/sagemaker-controller #176).
        # Left out, so that nothing is promised or counted as idle cost for them.
        definition["ResourceConfig"] = resources

    limits: dict[str, Any] = {"MaxParallelTrainingJobs": tune.max_parallel_jobs}
    if tune.strategy != "Grid":
        limits["MaxNumberOfTrainingJobs"] = tune.max_jobs
    config: dict[str, Any] = {
        "Strategy": tune.strategy,
        "HyperParameterTuningJobObjective": {"Type": tune.objective_type,
                                             "MetricName": tune.objective_metric},
        "ResourceLimits": limits,
        "ParameterRanges": _parameter_ranges(tune),
        "TrainingJobEarlyStoppingType": tune.early_stopping,
    }
    if tune.strategy == "Hyperband":
        config["StrategyConfig"] = _hyperband_config(static)
    if tune.random_seed is not None:
        config["RandomSeed"] = tune.random_seed
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
    }
    if training_request.get("Tags"):
        request["Tags"] = list(training_request["Tags"])
    return request


# --- reading the answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrialOutcome:
    """One training job of a tuning job, from its HyperParameterTrainingJobSummary."""

    name: str
    number: int | None  # the NNN of ``<tuning job>-<NNN>-<8 hex>``
    status: str  # InProgress, Completed, Failed, Stopping, Stopped
    values: dict[str, Any]  # the tuned hyperparameters, decoded as the training script reads
    objective: float | None
    objective_status: str | None  # Succeeded, Pending, Failed
    failure_reason: str | None


@dataclass(frozen=True)
class TuningOutcome:
    """Where a tuning job stands: its status, its trials counted, and the best one so far."""

    name: str
    status: str  # InProgress, Completed, Failed, Stopping, Stopped
    completed: int
    running: int
    stopped: int
    failed: int
    best_job: str | None
    best_value: float | None
    metric: str | None
    failure_reason: str | None
    trials: tuple[TrialOutcome, ...]

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Stopped")

    def progress(self) -> str:
        """One line for the waiting user: trials by state, and the best so far."""
        text = (f"{self.completed} completed, {self.running} running, {self.stopped} stopped,"
                f" {self.failed} failed")
        if self.best_job is not None and self.best_value is not None:
            text += f"; best {self.metric} {self.best_value:g} ({self.best_job})"
        return text


def trial_number(name: str) -> int | None:
    """The NNN of a trial named ``<tuning job>-<NNN>-<8 hex>``, as the service names them."""
    match = _TRIAL_NAME.search(name)
    return int(match.group(1)) if match else None


def _trial(summary: Mapping[str, Any]) -> TrialOutcome:
    objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    value = objective.get("Value")
    return TrialOutcome(
        name=summary["TrainingJobName"],
        number=trial_number(summary["TrainingJobName"]),
        status=summary["TrainingJobStatus"],
        values=decode_hyperparameters(summary.get("TunedHyperParameters") or {}),
        objective=float(value) if value is not None else None,
        objective_status=summary.get("ObjectiveStatus"),
        failure_reason=summary.get("FailureReason"),
    )


def tuning_outcome(describe: Mapping[str, Any],
                   trials: Iterable[Mapping[str, Any]] = ()) -> TuningOutcome:
    """A DescribeHyperParameterTuningJob answer and the job's training job summaries
    (:func:`list_trials`), read: failed counts both kinds of error (RetryableError and
    NonRetryableError); the trials come in trial-number order (creation order without one)."""
    counters = describe.get("TrainingJobStatusCounters") or {}
    best = describe.get("BestTrainingJob") or {}
    best_metric = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    objective = (describe.get("HyperParameterTuningJobConfig") or {}).get(
        "HyperParameterTuningJobObjective") or {}
    ordered = sorted(trials, key=lambda s: (trial_number(s["TrainingJobName"]) is None,
                                            trial_number(s["TrainingJobName"]) or 0,
                                            str(s.get("CreationTime", ""))))
    value = best_metric.get("Value")
    return TuningOutcome(
        name=describe["HyperParameterTuningJobName"],
        status=describe["HyperParameterTuningJobStatus"],
        completed=int(counters.get("Completed", 0)),
        running=int(counters.get("InProgress", 0)),
        stopped=int(counters.get("Stopped", 0)),
        failed=int(counters.get("RetryableError", 0)) + int(counters.get("NonRetryableError", 0)),
        best_job=best.get("TrainingJobName"),
        best_value=float(value) if value is not None else None,
        metric=best_metric.get("MetricName") or objective.get("MetricName"),
        failure_reason=describe.get("FailureReason") or None,
        trials=tuple(_trial(s) for s in ordered),
    )


def list_trials(client: Any, name: str) -> list[dict[str, Any]]:
    """Every HyperParameterTrainingJobSummary of the tuning job ``name`` (all pages), through
    a boto3 SageMaker ``client``."""
    summaries: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
    while True:
        page = client.list_training_jobs_for_hyper_parameter_tuning_job(**kwargs)
        summaries += page.get("TrainingJobSummaries") or []
        token = page.get("NextToken")
        if not token:
            return summaries
        kwargs["NextToken"] = token
