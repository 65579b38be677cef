"""SageMaker Experiments tracking for --sm runs: one Run per item, in an experiment named
after the YAML file, with the job attached through ExperimentConfig; the Run's status
follows the job's.

SageMaker allows 50 trial components in one run group, not counting those it created
itself (AssociateTrialComponent answers `ResourceLimitExceeded: The account-level service
limit 'Total number of trial components allowed in a single trial, excluding those
automatically created by SageMaker' is 50 Trial Components, ...`). A job started with an
ExperimentConfig gets such a component of its own (`<job>-aws-training-job`), which
ListTrialComponents shows with a TrialComponentSource. `plan()` counts the others before
anything is launched and rolls an experiment over to a new name (`lr-sweep--2`) with a
notice, or stops with a clear error when one file alone has more than 50 runs. Each launch
checks again, and rolls over instead of failing when another session filled the group
meanwhile.

A search (a `tune:` item) is a hyperparameter tuning job, and CreateHyperParameterTuningJob
takes no ExperimentConfig (neither the request nor its HyperParameterTrainingJobDefinition has
one; nor does the SDK's HyperparameterTuner.fit). The service files the trials itself, in an
experiment of the tuning job's own: "A hyperparameter tuning job automatically creates Amazon
SageMaker experiments, trials, and trial components for each training job that it runs"
(CreateHyperParameterTuningJob, SageMaker API reference), `<tuning job>-aws-tuning-job`, each
trial job with its own `<job>-aws-training-job` component, as any job. So each trial becomes a
Run of the file's experiment after it ended (`record_trial`): named after its job, with its
hyperparameters, metric series and status, as a job's Run is, and with the job's own
component associated with the run group too (what the SageMaker Experiments example
"associate-hyper-parameter-tuning-job" does; a component can be in several trials, and one
SageMaker made does not count against the 50). `plan()` counts a search as `max_jobs` runs.
A search with more trials than one run group holds is not refused, unlike a matrix of more
than 50 runs: it cannot be split with -k or over files, and the tuning job itself is
unaffected, so its later trials roll over to `lr-search--2` (the history reads both).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable

from sm_pytest.model import COMPLETED, FAILED, STOPPED, TIMED_OUT, RunResult
from sm_pytest.sagemaker.aws import error_code
from sm_pytest.sagemaker.names import (
    MAX_ROLLOVER,
    display_name,
    experiment_name,
    job_component_name,
    run_group,
    trial_component_name,
)
from sm_pytest.spec.experiment_file import RunSpec

RUN_GROUP_LIMIT = 50
TELEMETRY_OPT_OUT = {"SchemaVersion": "1.0",
                     "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# TrialComponentPrimaryStatus of a run whose job ended so (TIMED_OUT: SageMaker stopped it).
RUN_STATUS = {COMPLETED: "Completed", FAILED: "Failed", STOPPED: "Stopped",
              TIMED_OUT: "Stopped"}
_STATUS_MESSAGE_MAX = 1024  # TrialComponentStatusMessage, pattern '.*' (one line)
_NOT_FOUND = {"ResourceNotFound", "ResourceNotFoundException"}


class ExperimentLimitError(Exception):
    pass


class HistoryError(Exception):
    """The history could not be read (permissions, credentials, network); says why."""


def sdk_session(boto_session):
    """A sagemaker-core Session with telemetry off (FIELD-NOTES: no environment variable does
    it), with the SDK's config schema checked once rather than on every call (sdk_config)."""
    from sagemaker.core.helper.session_helper import Session

    from sm_pytest.sagemaker import sdk_config

    sdk_config.install()
    return Session(boto_session=boto_session, sagemaker_config=TELEMETRY_OPT_OUT)


def run_components(client, experiment: str) -> list[dict]:
    """The summaries of the runs in `experiment`'s run group: every trial component but
    those SageMaker created itself (they carry a TrialComponentSource). [] when the group
    does not exist; any other error is raised."""
    summaries = []
    try:
        for page in client.get_paginator("list_trial_components").paginate(
                TrialName=run_group(experiment), PaginationConfig={"PageSize": 100}):
            summaries += [s for s in page.get("TrialComponentSummaries", [])
                          if not s.get("TrialComponentSource")]
    except Exception as exc:
        if error_code(exc) in _NOT_FOUND:
            return []
        raise
    return summaries


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_STATUS_MESSAGE_MAX]


class SageMakerExperiments:
    def __init__(self, boto_session, notice: Callable[[str], None]):
        self.session = sdk_session(boto_session)
        self.client = boto_session.client("sagemaker")
        self.notice = notice
        # YAML experiment -> which of its SageMaker experiments this session uses (1: the
        # base name, 2: `<name>--2`, ...), and how many runs it plans there.
        self.rollover: dict[str, int] = {}
        self.planned: dict[str, int] = {}
        self._launched: Counter[str] = Counter()
        self._started: dict[str, str] = {}  # job name -> the SageMaker experiment of its Run
        # Run keeps a process-wide context stack and refuses nested `with` blocks, and the
        # launcher threads and the main thread all log: one at a time.
        self._lock = threading.Lock()

    @property
    def names(self) -> dict[str, str]:
        """YAML experiment -> SageMaker experiment name, as planned."""
        return {key: experiment_name(key, n) for key, n in self.rollover.items()}

    def count_components(self, name: str) -> int:
        """The runs that count towards the run group's limit."""
        return len(run_components(self.client, name))

    def plan(self, runs: Iterable[RunSpec]) -> dict[str, int]:
        """Choose, for each experiment not planned yet, a SageMaker experiment with room for
        every planned run, before any launch; a search counts as its `max_jobs` trials.
        Returns what it chose (see `adopt`)."""
        runs = list(runs)
        fixed = Counter(run.experiment for run in runs if run.tune is None)
        trials = Counter()
        for run in runs:
            if run.tune is not None:
                trials[run.experiment] += run.tune.max_jobs
        chosen = {}
        for experiment in sorted({run.experiment for run in runs}):
            if experiment in self.rollover:
                continue
            if fixed[experiment] > RUN_GROUP_LIMIT:
                raise ExperimentLimitError(
                    f"experiment {experiment_name(experiment)!r} has {fixed[experiment]} runs"
                    f" in this session, more than the {RUN_GROUP_LIMIT} SageMaker Experiments"
                    " allows in one run group; split its matrix over several files or select"
                    " fewer runs with -k")
            count = fixed[experiment] + trials[experiment]
            if count > RUN_GROUP_LIMIT:  # searches only: they roll over (module docstring)
                self.notice(
                    f"SageMaker experiment {experiment_name(experiment)!r}: this session may"
                    f" record {count} runs ({trials[experiment]} of them trials, the max_jobs"
                    f" of its searches), more than the {RUN_GROUP_LIMIT} of one run group;"
                    f" the runs after the {RUN_GROUP_LIMIT}th go to the next rolled-over"
                    " experiment")
            chosen[experiment] = self._with_room(experiment, min(count, RUN_GROUP_LIMIT),
                                                 start=1)
            self.planned[experiment] = count
        self.rollover.update(chosen)
        return chosen

    def adopt(self, plan: dict[str, int], counts: dict[str, int]) -> None:
        """Use a plan another process of this session made (pytest-xdist)."""
        for experiment, rollover in plan.items():
            self.rollover.setdefault(experiment, rollover)
            self.planned.setdefault(experiment, counts.get(experiment, 1))

    def _with_room(self, experiment: str, count: int, start: int) -> int:
        rollover = start
        while True:
            name = experiment_name(experiment, rollover)
            existing = self.count_components(name)
            if existing + count <= RUN_GROUP_LIMIT:
                return rollover
            if rollover == MAX_ROLLOVER:
                raise ExperimentLimitError(f"every rolled-over form of {name!r} is full")
            rollover += 1
            self.notice(f"SageMaker experiment {name!r} holds {existing} of"
                        f" {RUN_GROUP_LIMIT} runs; this session's {count} go to"
                        f" {experiment_name(experiment, rollover)!r}")

    def _launch_experiment(self, run: RunSpec, full: bool = False) -> str:
        """The experiment the next run of `run.experiment` goes to: the planned one while it
        has room for one more run, else the next one with room for those left."""
        if run.experiment not in self.rollover:
            self.plan([run])
        current = self.rollover[run.experiment]
        name = experiment_name(run.experiment, current)
        if full or self.count_components(name) >= RUN_GROUP_LIMIT:
            left = max(1, self.planned.get(run.experiment, 1) - self._launched[run.experiment])
            left = min(left, RUN_GROUP_LIMIT)  # a search's trials may fill several groups
            rollover = self._with_room(run.experiment, left, start=current + 1)
            self.rollover[run.experiment] = rollover
            self.notice(f"SageMaker experiment {name!r} filled up after this session planned"
                        f" it; its {left} run(s) still to launch go to"
                        f" {experiment_name(run.experiment, rollover)!r}")
        return experiment_name(run.experiment, self.rollover[run.experiment])

    def start_run(self, run: RunSpec, job_name: str) -> dict:
        """Create the job's Run (named after the job), log its parameters, and return the
        job's ExperimentConfig; the Run shows InProgress until finish_run."""
        with self._lock:
            experiment = self._launch_experiment(run)
            try:
                config = self._create_run(experiment, run, job_name)
            except Exception as exc:
                if error_code(exc) != "ResourceLimitExceeded":
                    raise
                # Another session took the last places between the count and now.
                experiment = self._launch_experiment(run, full=True)
                config = self._create_run(experiment, run, job_name)
            self._launched[run.experiment] += 1
            self._started[job_name] = experiment
            return config

    def _create_run(self, experiment: str, run: RunSpec, job_name: str) -> dict:
        from sagemaker.core.experiments.run import Run

        with Run(experiment_name=experiment, run_name=job_name,
                 run_display_name=display_name(run), sagemaker_session=self.session) as sm_run:
            sm_run.log_parameters(_parameters(run))
            # Passed as is: rebuilding it from the short name breaks the link (FIELD-NOTES).
            config = dict(sm_run.experiment_config)
        # Leaving the Run marked it Completed; the job has not even started.
        self._set_status(config["RunName"], "InProgress", f"training job {job_name}")
        return config

    def _set_status(self, component: str, status: str, message: str) -> None:
        self.client.update_trial_component(
            TrialComponentName=component,
            Status={"PrimaryStatus": status, "Message": _one_line(message)})

    def finish_run(self, run: RunSpec, result: RunResult) -> None:
        """Log the metric series of the job `result` came from to its Run, and give the Run
        the job's outcome: Completed, Failed or Stopped, with the failure reason."""
        from sagemaker.core.experiments.run import load_run

        experiment = self._started.get(result.job_name) or experiment_name(
            run.experiment, self.rollover.get(run.experiment, 1))
        try:
            with self._lock:
                with load_run(experiment_name=experiment, run_name=result.job_name,
                              sagemaker_session=self.session) as sm_run:
                    for metric, values in result.metric_series.items():
                        for step, value in enumerate(values):
                            sm_run.log_metric(metric, value, step=step)
                    # Saving a loaded run sends its parameters again; moto (and any API that
                    # replaces rather than merges) would otherwise drop them.
                    sm_run.log_parameters(_parameters(run))
                # Leaving load_run marked the run Completed, whatever the job did.
                status = RUN_STATUS.get(result.status, "Failed")
                self._set_status(trial_component_name(experiment, result.job_name), status,
                                 result.failure_reason if status != "Completed" else "")
        except Exception as exc:  # tracking must never cost a result already obtained
            self.notice(f"could not log metrics of {run.name} to SageMaker Experiments: {exc}")

    def record_trial(self, trial: RunSpec, result: RunResult) -> None:
        """A trial of a search, fetched once it ended, as a Run of the file's experiment:
        started and finished as a job's Run is (`start_run`, `finish_run`: its parameters,
        metric series and status), and the trial job's own `<job>-aws-training-job`
        component associated with the same run group, where the service made one. The
        tuning job passed no ExperimentConfig, so nothing else links them (module docstring).
        """
        what = f"{trial.name} trial {trial.trial_index}"
        # Tracking must never cost a result already obtained: a failure is a notice.
        try:
            config = self.start_run(trial, result.job_name)
        except Exception as exc:
            self.notice(f"could not record {what} in SageMaker Experiments: {exc}")
            return
        try:
            self._associate_job_component(result.job_name, config["TrialName"])
        except Exception as exc:  # the Run still records the trial, and is finished below
            self.notice(f"could not add the training job of {what} to its SageMaker"
                        f" Experiments run group: {exc}")
        self.finish_run(trial, result)

    def _associate_job_component(self, job_name: str, trial_name: str) -> None:
        """Put SageMaker's own component of `job_name` in `trial_name` too; nothing when the
        service made none (ResourceNotFound)."""
        try:
            with self._lock:
                self.client.associate_trial_component(
                    TrialComponentName=job_component_name(job_name), TrialName=trial_name)
        except Exception as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise


def _parameters(run: RunSpec) -> dict:
    return {k: _loggable(v) for k, v in run.hyperparameters.items()}


def _loggable(value):
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else str(
        value)


def history_frame(boto_session, experiment: str):
    """The whole history of one experiment file as a DataFrame, one row per run, over its
    rolled-over experiments too (`lr-sweep`, `lr-sweep--2`, ...): `run`, `trial_component`,
    `experiment` (which of them the run is in), each parameter, and each metric's last
    value. HistoryError when it cannot be read (AccessDenied, expired credentials, ...).

    ExperimentAnalytics is the SDK's way; where its search is refused as invalid (some
    partitions) the run group's trial components are described instead, into the same
    columns. SageMaker's own components (`<job>-aws-training-job`) are not runs."""
    import pandas as pd

    client = boto_session.client("sagemaker")
    session = None
    frames = []
    for rollover in range(1, MAX_ROLLOVER + 1):
        name = experiment_name(experiment, rollover)
        try:
            summaries = run_components(client, name)
            if not summaries:
                break  # rolled over in order: no `--3` without a `--2`
            session = session or sdk_session(boto_session)
            frame = _history_of(session, client, name, summaries)
        except Exception as exc:
            raise HistoryError(f"could not read the SageMaker Experiments history of {name!r}:"
                               f" {type(exc).__name__}: {exc}") from exc
        frame.insert(min(2, len(frame.columns)), "experiment", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _history_of(session, client, name: str, summaries: list[dict]):
    import pandas as pd
    from sagemaker.core.analytics import ExperimentAnalytics

    try:
        frame = ExperimentAnalytics(experiment_name=name, sagemaker_session=session).dataframe()
    except Exception as exc:
        if error_code(exc) != "ValidationException":
            raise
    else:
        if not frame.empty:
            return _history_columns(frame)
    rows = []
    for summary in summaries:
        detail = client.describe_trial_component(TrialComponentName=summary["TrialComponentName"])
        row = {"run": detail.get("DisplayName") or detail["TrialComponentName"],
               "trial_component": detail["TrialComponentName"]}
        for key, param in sorted((detail.get("Parameters") or {}).items()):
            row[key] = param.get("NumberValue", param.get("StringValue"))
        for metric in detail.get("Metrics") or []:
            row[metric["MetricName"]] = metric.get("Last")
        rows.append(row)
    return pd.DataFrame(rows)


def _history_columns(frame):
    """ExperimentAnalytics' frame in history_frame's columns: runs only (no SourceArn),
    `<metric> - Last` becomes `<metric>`; the other statistics, artifacts and parent lists
    are left out."""
    if "SourceArn" in frame.columns:
        frame = frame[frame["SourceArn"].isna()].drop(columns="SourceArn")
    renamed = {"DisplayName": "run", "TrialComponentName": "trial_component"}
    keep = []
    for column in frame.columns:
        if column in renamed:
            keep.append(column)
        elif column.endswith(" - Last"):
            renamed[column] = column.removesuffix(" - Last")
            keep.append(column)
        elif " - " not in column and column not in ("Trials", "Experiments"):
            keep.append(column)  # parameters
    frame = frame[keep].rename(columns=renamed)
    first = [c for c in ("run", "trial_component") if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]].reset_index(drop=True)
