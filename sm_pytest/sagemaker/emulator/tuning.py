"""Hyperparameter tuning jobs that really run their trials, where moto 5.2.5 only stubs them
(its job is Completed at once, with a fake best job and no trial; it has no Stop and no
ListTrainingJobsForHyperParameterTuningJob).

Patched into moto's SageMaker responses by patches.py, for the emulator's lifetime:

* CreateHyperParameterTuningJob: checked first against the service model like every request
  (service_rules), then against the rules the service states in words
  (:mod:`~sm_pytest.sagemaker.emulator.tuning_rules`); moto stores the job, and a
  :class:`TuningRunner` thread runs the search.
* DescribeHyperParameterTuningJob: the job as it stands: status, TrainingJobStatusCounters,
  ObjectiveStatusCounters, BestTrainingJob, and the request as sent.
* ListTrainingJobsForHyperParameterTuningJob: one HyperParameterTrainingJobSummary per trial
  (StatusEquals, SortBy, SortOrder, MaxResults with the service's default of 10, NextToken).
* StopHyperParameterTuningJob: Stopping, every running trial stopped, no new one started,
  then Stopped.

Each trial is a training job created through the emulator's own CreateTrainingJob, as the
tuning job's account (so it is checked, stored, run and logged like any job, and DescribeTrainingJob
shows its TuningJobArn): named ``<tuning job>-<NNN>-<8 hex>`` as the service names them, with
the training job definition, the tuning job's tags, the static hyperparameters, the trial's
values of the ranges and ``_tuning_objective_metric``, as the service sets it. At most
MaxParallelTrainingJobs run at once, up to MaxNumberOfTrainingJobs (Grid: every combination).
The trials' values come from tuning_rules.search_points: Bayesian and Hyperband are emulated by
seeded random sampling (RandomSeed), without SageMaker's optimiser. As on AWS, each trial is
filed in SageMaker Experiments by the service: in the experiment ``<tuning job>-aws-tuning-job``,
with its job's ``<job>-aws-training-job`` component (trial_components.file_tuning_trial).

Early stopping (TrainingJobEarlyStoppingType Auto, and Hyperband's own): the rule of the
developer guide's "How Early Stopping Works", quoted in full in
:class:`~sm_pytest.sagemaker.emulator.tuning_rules.MedianRule`: "If the value of the objective
metric for the current training job is worse ... than the median value of running averages of
the objective metric for previous training jobs up to the same epoch, SageMaker stops the
current training job." The intermediate values are the objective's metric definition (the
request's MetricDefinitions) applied to each running trial's log lines as they come (its
program's lines, algo-1's with several instances: one value per epoch, not one per host); a
trial is judged at each new value against the trials that completed. A trial the rule stops is
stopped through StopTrainingJob, as a tuning job's Stop stops its trials, and shows as the
service shows it: TrainingJobStatus Stopped (SecondaryStatus Stopped), counted in
TrainingJobStatusCounters.Stopped; its last value is its
FinalHyperParameterTuningJobObjectiveMetric, ObjectiveStatus Succeeded (the value was "used in
the hyperparameter tuning process"); it is never BestTrainingJob, which is a Completed trial.
The summary has no member that says "stopped early": a Stopped trial of a tuning job nobody
stopped is one. Not emulated: how many completed trials the service waits for before the
median counts (the emulator waits for 3, as sm-pytest's local search does); Hyperband's
brackets (it is emulated by the same median rule, from MinResource on) and its stop at
MaxResource (a trial trains to its own end).

A trial's objective is the objective metric's value in its FinalMetricDataList (the metric
definitions' regexes over its log, as for any emulated job). A failed trial counts as
NonRetryableError (RetryableError for an internal error) and the search goes on. BestTrainingJob
is the best Completed trial with an objective (the first launched, on a tie). The job ends
Completed when some trial succeeded, else Failed (the emulator's wording: the service does not
document when a search fails). CheckpointConfig is passed to every trial unchanged: all trials
of a tuning job share its S3Uri (one definition for all).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
from moto.sagemaker.responses import SageMakerResponse

from sm_pytest.sagemaker.emulator import trial_components, tuning_rules

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.jobs import JobRunner

__all__ = ["TuningHost", "TuningRunner", "handlers"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05
OBJECTIVE_PARAM = "_tuning_objective_metric"
DEFAULT_MAX_RESULTS = 10  # ListTrainingJobsForHyperParameterTuningJob's MaxResults
# Members of a training job definition that CreateTrainingJob takes as they are.
_TRAINING_KEYS = (
    "AlgorithmSpecification", "RoleArn", "InputDataConfig", "VpcConfig", "OutputDataConfig",
    "ResourceConfig", "StoppingCondition", "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "CheckpointConfig",
    "RetryStrategy", "Environment",
)
_RUNNING = ("InProgress", "Stopping")
_SORT_KEYS = {"Name": "TrainingJobName", "CreationTime": "CreationTime",
              "Status": "TrainingJobStatus"}


class TuningHost(Protocol):
    """What a tuning job's thread and the patched handlers need of the emulator."""

    #: Held while a stored job is read or changed; reentrant.
    lock: AbstractContextManager[Any]
    #: Training job name -> its runner.
    jobs: dict[str, JobRunner]
    #: Tuning job name -> its runner.
    tuning_jobs: dict[str, TuningRunner]

    @property
    def closing(self) -> bool:
        """The emulator is shutting down."""
        ...

    def sagemaker_call(self, account: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call the emulated SageMaker (``operation`` in boto3's snake_case) as ``account``."""
        ...

    def record_refusal(self, operation: str, text: str) -> None:
        """Record a request refused for breaking the service's rules."""
        ...


@dataclass
class Trial:
    """One training job the tuning job launched."""

    name: str
    number: int
    tuned: dict[str, str]
    #: The objective's intermediate values so far, one per log line that reported it.
    values: list[float] = field(default_factory=list)
    #: (attempt number, how many of that attempt's lines were read into ``values``).
    read: tuple[int, int] = (0, 0)
    #: How many of ``values`` the early stopping rule has judged.
    judged: int = 0
    #: Every line of the ended trial is in ``values``.
    read_all: bool = False
    #: Stopped by early stopping (not by StopHyperParameterTuningJob).
    stopped_early: bool = False


class TuningRunner(threading.Thread):
    """Runs one tuning job's search in a background thread (see the module docstring)."""

    def __init__(self, host: TuningHost, *, name: str, request: dict[str, Any], stored: Any,
                 account: str):
        super().__init__(name=f"sm-emulator-tuning:{name}", daemon=True)
        self.host = host
        self.tuning_job_name = name
        self.request = request
        self.stored = stored  # moto's HyperParameterTuningJob
        self.account = account
        config = request["HyperParameterTuningJobConfig"]
        objective = config["HyperParameterTuningJobObjective"]
        self.metric = objective["MetricName"]
        self.maximize = objective["Type"] == "Maximize"
        limits = config["ResourceLimits"]
        self.max_parallel = int(limits["MaxParallelTrainingJobs"])
        self.max_runtime = limits.get("MaxRuntimeInSeconds")
        #: The tuned values of every trial, in launch order (fixed at creation).
        self.points = tuning_rules.search_points(config)
        #: The rule that stops trials early; None when none is stopped early.
        self.early_stopping = tuning_rules.early_stopping_rule(request)
        #: Every trial launched, in order.
        self.trials: list[Trial] = []
        #: The most trials seen running at once.
        self.peak_parallel = 0
        self.error: str | None = None  # an emulator-side traceback, if any
        self.done = threading.Event()
        self._stop_requested = threading.Event()
        self._began = time.monotonic()

    # --- what the patched handlers use (under the host's lock) -----------------------------

    @property
    def status(self) -> str:
        return self.stored.hyper_parameter_tuning_job_status

    def request_stop(self) -> None:
        """StopHyperParameterTuningJob."""
        self._stop_requested.set()
        self._set(hyper_parameter_tuning_job_status="Stopping")

    def describe(self) -> dict[str, Any]:
        """The DescribeHyperParameterTuningJob answer."""
        with self.host.lock:
            stored = self.stored
            answer: dict[str, Any] = {
                "HyperParameterTuningJobName": self.tuning_job_name,
                "HyperParameterTuningJobArn": stored.arn,
                "HyperParameterTuningJobConfig": copy.deepcopy(
                    self.request["HyperParameterTuningJobConfig"]),
                "TrainingJobDefinition": copy.deepcopy(self.request["TrainingJobDefinition"]),
                "HyperParameterTuningJobStatus": stored.hyper_parameter_tuning_job_status,
                "CreationTime": stored.creation_time,
                "LastModifiedTime": stored.last_modified_time,
                "TrainingJobStatusCounters": dict(stored.training_job_status_counters),
                "ObjectiveStatusCounters": dict(stored.objective_status_counters),
            }
            if stored.hyper_parameter_tuning_end_time is not None:
                answer["HyperParameterTuningEndTime"] = stored.hyper_parameter_tuning_end_time
            if stored.best_training_job:
                answer["BestTrainingJob"] = copy.deepcopy(stored.best_training_job)
            if stored.failure_reason:
                answer["FailureReason"] = stored.failure_reason
            end = stored.hyper_parameter_tuning_end_time or utcnow()
            answer["ConsumedResources"] = {
                "RuntimeInSeconds": int((end - stored.creation_time).total_seconds())}
            return answer

    def summaries(self) -> list[dict[str, Any]]:
        """A HyperParameterTrainingJobSummary of every trial, in launch order."""
        with self.host.lock:
            return [self._summary(trial) for trial in self.trials]

    # --- the thread ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._search()
        except Exception as exc:  # an emulator bug: never leave the job InProgress
            self.error = traceback.format_exc()
            logger.error("emulated tuning job %s: %s", self.tuning_job_name, self.error)
            if not self.host.closing:
                self._end("Failed", f"InternalServerError: emulator error: {exc}")
        finally:
            self.done.set()

    def _search(self) -> None:
        waiting = list(enumerate(self.points, start=1))
        failure = None
        while not self.host.closing:
            if self._stop_requested.is_set() or self._out_of_time():
                break
            running = self._running()
            while (waiting and len(running) < self.max_parallel
                   and not self._stop_requested.is_set()):
                number, tuned = waiting.pop(0)
                failure = self._launch(number, tuned)
                if failure is not None:
                    break
                running = self._running()
            self.peak_parallel = max(self.peak_parallel, len(running))
            if self.early_stopping is not None and not self._stop_requested.is_set():
                self._stop_early()
            self._refresh()
            if failure is not None or (not waiting and not running):
                break
            time.sleep(POLL_SECONDS)
        if self.host.closing:
            return
        stopping = failure is not None or self._stop_requested.is_set() or bool(waiting)
        if stopping:
            self._stop_trials()
        self._refresh()
        if failure is not None:
            self._end("Failed", failure)
        elif stopping:
            self._end("Stopped")
        elif self.stored.objective_status_counters["Succeeded"] == 0:
            self._end("Failed", f"No training job succeeded: every training job failed or"
                                f" reported no {self.metric} metric.")
        else:
            self._end("Completed")

    def _out_of_time(self) -> bool:
        return (self.max_runtime is not None
                and time.monotonic() - self._began > float(self.max_runtime))

    def _running(self) -> list[Trial]:
        return [t for t in self.trials if not self.host.jobs[t.name].done.is_set()]

    def _launch(self, number: int, tuned: dict[str, str]) -> str | None:
        """Create trial ``number``; the tuning job's FailureReason if it could not be."""
        digest = hashlib.sha256(f"{self.tuning_job_name}\0{number}".encode()).hexdigest()
        name = f"{self.tuning_job_name}-{number:03d}-{digest[:8]}"
        definition = self.request["TrainingJobDefinition"]
        hyperparameters = dict(definition.get("StaticHyperParameters") or {})
        hyperparameters.update(tuned)
        hyperparameters[OBJECTIVE_PARAM] = self.metric
        params = {key: copy.deepcopy(definition[key]) for key in _TRAINING_KEYS
                  if key in definition}
        params.update(TrainingJobName=name, HyperParameters=hyperparameters)
        # The service keeps no warm pool for a trial: "The server always sets
        # KeepAlivePeriodInSeconds to nil" (aws-controllers-k8s/sagemaker-controller #176).
        params.get("ResourceConfig", {}).pop("KeepAlivePeriodInSeconds", None)
        if self.request.get("Tags"):
            params["Tags"] = copy.deepcopy(self.request["Tags"])
        try:
            self.host.sagemaker_call(self.account, "create_training_job", **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return (f"{error.get('Code', 'Error')}: could not create training job {name}:"
                    f" {error.get('Message', exc)}")
        with self.host.lock:
            # Every reader of a stored job's attributes holds the lock (see jobs.py).
            job = self.host.jobs[name]
            job.stored.tuning_job_arn = self.stored.arn
            # As the service does, in an experiment of the tuning job's own.
            trial_components.file_tuning_trial(job.account, job.region, self.tuning_job_name,
                                               name, job.stored.arn)
            self.trials.append(Trial(name, number, dict(tuned)))
        return None

    # --- early stopping ------------------------------------------------------------------

    def _stop_early(self) -> None:
        """Read each trial's new objective values; stop the running trials the rule stops."""
        rule = self.early_stopping
        for trial in self.trials:
            self._read_values(trial, rule)
        completed = [t.values for t in self.trials
                     if t.read_all and self.host.jobs[t.name].status == "Completed"]
        for trial in self.trials:
            if trial.stopped_early or trial.read_all:
                continue
            stop = any(rule.stops(trial.values[:epoch], completed)
                       for epoch in range(trial.judged + 1, len(trial.values) + 1))
            trial.judged = len(trial.values)
            if stop:
                self._stop_trial_early(trial)

    def _stop_trial_early(self, trial: Trial) -> None:
        with self.host.lock:
            if self.host.jobs[trial.name].status != "InProgress":
                return  # ending already: it stops, fails or completes by itself
            trial.stopped_early = True
        logger.info("emulated tuning job %s: early stopping stops %s at epoch %d",
                    self.tuning_job_name, trial.name, len(trial.values))
        with contextlib.suppress(ClientError):  # it may have ended meanwhile
            self.host.sagemaker_call(self.account, "stop_training_job",
                                     TrainingJobName=trial.name)

    def _read_values(self, trial: Trial, rule: tuning_rules.MedianRule) -> None:
        runner = self.host.jobs[trial.name]
        if trial.read_all:
            return
        ended = runner.done.is_set()  # before reading: then no line comes after the read
        if not runner.attempts:
            trial.read_all = ended
            return
        attempt = runner.attempts[-1]
        number, read = trial.read
        if attempt.number != number:  # a restart (spot): its log goes on in a new stream
            number, read = attempt.number, 0
        # A slice of the list the job thread appends to: whole lines, never half of one.
        lines = attempt.lines[read:]
        trial.read = (number, read + len(lines))
        trial.values += [v for v in map(rule.value, lines) if v is not None]
        trial.read_all = ended

    def _stop_trials(self) -> None:
        for trial in self._running():
            with contextlib.suppress(ClientError):  # it may have ended meanwhile
                self.host.sagemaker_call(self.account, "stop_training_job",
                                         TrainingJobName=trial.name)
        for trial in self.trials:
            runner = self.host.jobs[trial.name]
            while not runner.done.wait(POLL_SECONDS):
                if self.host.closing:
                    return

    # --- state -----------------------------------------------------------------------------

    def _set(self, **attributes: Any) -> None:
        with self.host.lock:
            for key, value in attributes.items():
                setattr(self.stored, key, value)
            self.stored.last_modified_time = utcnow()

    def _end(self, status: str, failure_reason: str | None = None) -> None:
        self._set(hyper_parameter_tuning_job_status=status,
                  hyper_parameter_tuning_end_time=utcnow(),
                  failure_reason=(failure_reason or "")[:1024])

    def _objective(self, stored: Any) -> float | None:
        for metric in stored.final_metric_data_list or []:
            if metric.get("MetricName") == self.metric:
                return float(metric["Value"])
        return None

    def _summary(self, trial: Trial) -> dict[str, Any]:
        stored = self.host.jobs[trial.name].stored
        status = stored.training_job_status
        value = self._objective(stored)
        summary: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "TrainingJobArn": stored.arn,
            "TuningJobName": self.tuning_job_name,
            "CreationTime": stored.creation_time,
            "TrainingJobStatus": status,
            "TunedHyperParameters": dict(trial.tuned),
        }
        if stored.training_start_time is not None:
            summary["TrainingStartTime"] = stored.training_start_time
        if stored.training_end_time is not None:
            summary["TrainingEndTime"] = stored.training_end_time
        if stored.failure_reason:
            summary["FailureReason"] = stored.failure_reason
        if status in _RUNNING:
            summary["ObjectiveStatus"] = "Pending"
        elif value is not None and status in ("Completed", "Stopped"):
            summary["ObjectiveStatus"] = "Succeeded"
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": self.metric, "Value": value}
        else:
            summary["ObjectiveStatus"] = "Failed"
        return summary

    def _refresh(self) -> None:
        """Counters and the best trial, from the trials as they stand."""
        with self.host.lock:
            summaries = [self._summary(trial) for trial in self.trials]
            jobs = dict.fromkeys(("Completed", "InProgress", "RetryableError",
                                  "NonRetryableError", "Stopped"), 0)
            objectives = dict.fromkeys(("Succeeded", "Pending", "Failed"), 0)
            best = None
            for summary in summaries:
                status = summary["TrainingJobStatus"]
                if status in _RUNNING:
                    jobs["InProgress"] += 1
                elif status == "Failed":
                    internal = (summary.get("FailureReason") or "").startswith("InternalServer")
                    jobs["RetryableError" if internal else "NonRetryableError"] += 1
                else:
                    jobs[status] += 1
                objectives[summary["ObjectiveStatus"]] += 1
                metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
                if status == "Completed" and metric is not None and (
                        best is None or self._better(metric["Value"], best)):
                    best = summary
            self._set(training_job_status_counters=jobs, objective_status_counters=objectives,
                      best_training_job=best)

    def _better(self, value: float, summary: dict[str, Any]) -> bool:
        current = summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        return value > current if self.maximize else value < current


def _adopt(stored: Any) -> None:
    """The state of a tuning job just created, in place of moto's finished stub."""
    stored.hyper_parameter_tuning_job_status = "InProgress"
    stored.hyper_parameter_tuning_end_time = None
    stored.training_job_status_counters = dict.fromkeys(
        ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped"), 0)
    stored.objective_status_counters = dict.fromkeys(("Succeeded", "Pending", "Failed"), 0)
    stored.best_training_job = None
    stored.OverallBestTrainingJob = None
    stored.failure_reason = ""
    stored.tuning_job_completion_details = None
    stored.consumed_resources = None


def _not_found(name: str) -> ResourceNotFound:
    return ResourceNotFound(message=f"Could not find hyper parameter tuning job '{name}'.")


def _page(summaries: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    status = params.get("StatusEquals")
    if status:
        summaries = [s for s in summaries if s["TrainingJobStatus"] == status]
    sort_by = params.get("SortBy") or "Name"
    descending = params.get("SortOrder") == "Descending"
    if sort_by == "FinalObjectiveMetricValue":
        # Trials without an objective come last in either order.
        scored = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
        unscored = [s for s in summaries if s not in scored]
        scored.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
                    reverse=descending)
        summaries = scored + unscored
    else:
        summaries = sorted(summaries, key=lambda s: s[_SORT_KEYS[sort_by]], reverse=descending)
    token = params.get("NextToken") or "0"
    if not token.isdecimal():
        raise ValidationError(message=f"Invalid pagination token {token!r}.")
    start = int(token)
    size = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    answer: dict[str, Any] = {"TrainingJobSummaries": summaries[start:start + size]}
    if start + size < len(summaries):
        answer["NextToken"] = str(start + size)
    return answer


def handlers(active: Callable[[], TuningHost | None]) -> dict[str, Callable[..., Any]]:
    """The patched SageMakerResponse methods, answering to the host ``active()`` returns
    (moto's own behaviour when it returns None)."""
    moto_create = SageMakerResponse.create_hyper_parameter_tuning_job
    moto_describe = SageMakerResponse.describe_hyper_parameter_tuning_job

    def create_hyper_parameter_tuning_job(response: SageMakerResponse) -> Any:
        host = active()
        if host is None:
            return moto_create(response)
        raw = json.loads(response.body) if response.body else {}
        missing = tuning_rules.unemulated(raw)
        if missing:
            raise ValidationError(message=missing)
        refused = tuning_rules.problem(raw)
        if refused:
            host.record_refusal("CreateHyperParameterTuningJob", refused)
            raise ValidationError(message=refused)
        name = raw["HyperParameterTuningJobName"]
        with host.lock:
            result = moto_create(response)  # refuses a name in use, as the service does
            stored = response.sagemaker_backend.hyper_parameter_tuning_jobs[name]
            _adopt(stored)
            runner = TuningRunner(host, name=name, request=raw, stored=stored,
                                  account=response.current_account)
            host.tuning_jobs[name] = runner
            runner.start()
        return result

    def running(response: SageMakerResponse) -> tuple[Any, str, TuningRunner | None]:
        """The emulator, the request's tuning job name, and the search that runs it (None:
        one moto made without the emulator, or none)."""
        host = active()
        name = response._get_param("HyperParameterTuningJobName")
        return host, name, host.tuning_jobs.get(name) if host is not None else None

    def describe_hyper_parameter_tuning_job(response: SageMakerResponse) -> Any:
        host, name, runner = running(response)
        if runner is None:
            return moto_describe(response)
        return ActionResult(runner.describe())

    def list_training_jobs_for_hyper_parameter_tuning_job(response: SageMakerResponse) -> Any:
        host, name, runner = running(response)
        if runner is None:
            if name in response.sagemaker_backend.hyper_parameter_tuning_jobs:
                return ActionResult({"TrainingJobSummaries": []})  # moto's stub ran no trial
            raise _not_found(name)
        params = json.loads(response.body) if response.body else {}
        return ActionResult(_page(runner.summaries(), params))

    def stop_hyper_parameter_tuning_job(response: SageMakerResponse) -> Any:
        host, name, runner = running(response)
        if runner is None:
            if name in response.sagemaker_backend.hyper_parameter_tuning_jobs:
                raise ValidationError(message="The request was rejected because the"
                                              " hyperparameter tuning job is in status"
                                              " Completed.")
            raise _not_found(name)
        with host.lock:
            if runner.status != "InProgress":
                raise ValidationError(message="The request was rejected because the"
                                              " hyperparameter tuning job is in status"
                                              f" {runner.status}.")
            runner.request_stop()
        return EmptyResult()

    return {
        "create_hyper_parameter_tuning_job": create_hyper_parameter_tuning_job,
        "describe_hyper_parameter_tuning_job": describe_hyper_parameter_tuning_job,
        "list_training_jobs_for_hyper_parameter_tuning_job":
            list_training_jobs_for_hyper_parameter_tuning_job,
        "stop_hyper_parameter_tuning_job": stop_hyper_parameter_tuning_job,
    }
