"""SageMaker Experiments tracking for --sm runs: one Run per item, in an experiment named
after the YAML file, with the job attached through ExperimentConfig.

SageMaker allows 50 trial components in one run group (the error the original template hit
mid-sweep was `ResourceLimitExceeded ... 50 Trial Components`). `plan()` counts what is there
before anything is launched and rolls an experiment over to a new name (`lr-sweep-2`) with a
notice, or stops with a clear error when one file alone has more than 50 runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable

from ..artifacts import experiment_slug as slug
from ..backends.base import RunResult
from ..spec import RunSpec

RUN_GROUP_LIMIT = 50
TELEMETRY_OPT_OUT = {"SchemaVersion": "1.0",
                     "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


class ExperimentLimitError(Exception):
    pass


def experiment_name(run: RunSpec) -> str:
    return slug(run.experiment)


def run_group(name: str) -> str:
    # sagemaker.core.experiments.Run._generate_trial_name
    return f"Default-Run-Group-{name}"


def sdk_session(boto_session):
    """A sagemaker-core Session with telemetry off (FIELD-NOTES: no environment variable does
    it), with the SDK's config schema checked once rather than on every call (sdk_config)."""
    from sagemaker.core.helper.session_helper import Session

    from . import sdk_config

    sdk_config.install()
    return Session(boto_session=boto_session, sagemaker_config=TELEMETRY_OPT_OUT)


class SageMakerExperiments:
    def __init__(self, boto_session, notice: Callable[[str], None]):
        self.session = sdk_session(boto_session)
        self.client = boto_session.client("sagemaker")
        self.notice = notice
        self.names: dict[str, str] = {}  # YAML experiment -> SageMaker experiment name
        # Run keeps a process-wide context stack and refuses nested `with` blocks, and the
        # launcher thread and the main thread both log: one at a time.
        self._lock = threading.Lock()

    def count_components(self, name: str) -> int:
        count, kwargs = 0, {"TrialName": run_group(name)}
        try:
            while True:
                page = self.client.list_trial_components(**kwargs)
                count += len(page.get("TrialComponentSummaries", []))
                if not page.get("NextToken"):
                    return count
                kwargs["NextToken"] = page["NextToken"]
        except Exception as exc:
            if "ResourceNotFound" in str(exc) or "does not exist" in str(exc):
                return 0
            raise

    def plan(self, runs: Iterable[RunSpec]) -> None:
        """Choose an experiment name with room for every planned run, before any launch."""
        planned = Counter(experiment_name(run) for run in runs)
        for base, count in sorted(planned.items()):
            if count > RUN_GROUP_LIMIT:
                raise ExperimentLimitError(
                    f"experiment {base!r} has {count} runs in this session, more than the"
                    f" {RUN_GROUP_LIMIT} SageMaker Experiments allows in one run group; split"
                    " its matrix over several files or select fewer runs with -k")
            name, suffix = base, 1
            while (existing := self.count_components(name)) + count > RUN_GROUP_LIMIT:
                suffix += 1
                rolled = f"{base}-{suffix}"
                self.notice(f"SageMaker experiment {name!r} holds {existing} of"
                            f" {RUN_GROUP_LIMIT} runs; this session's {count} go to {rolled!r}")
                name = rolled
            self.names[base] = name

    def _planned_name(self, run: RunSpec) -> str:
        base = experiment_name(run)
        return self.names.get(base, base)

    def start_run(self, run: RunSpec, job_name: str) -> dict:
        """Create the Run, log its parameters, and return the job's ExperimentConfig."""
        from sagemaker.core.experiments.run import Run

        with self._lock, Run(experiment_name=self._planned_name(run), run_name=job_name,
                             run_display_name=run.name[:80],
                             sagemaker_session=self.session) as sm_run:
            sm_run.log_parameters(_parameters(run))
            # Passed as is: rebuilding it from the short name breaks the link (FIELD-NOTES).
            return dict(sm_run.experiment_config)

    def finish_run(self, run: RunSpec, result: RunResult) -> None:
        """Log the metric series of the job `result` came from to its Run (start_run made
        it under the job's name)."""
        from sagemaker.core.experiments.run import load_run

        try:
            with self._lock, load_run(experiment_name=self._planned_name(run),
                                      run_name=result.job_name,
                                      sagemaker_session=self.session) as sm_run:
                for metric, values in result.metric_series.items():
                    for step, value in enumerate(values):
                        sm_run.log_metric(metric, value, step=step)
                # Saving a loaded run sends its parameters again; moto (and any API that
                # replaces rather than merges) would otherwise drop them.
                sm_run.log_parameters(_parameters(run))
        except Exception as exc:  # tracking must never cost a result already obtained
            self.notice(f"could not log metrics of {run.name} to SageMaker Experiments: {exc}")


def _parameters(run: RunSpec) -> dict:
    return {k: _loggable(v) for k, v in run.hyperparameters.items()}


def _loggable(value):
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else str(
        value)


def history_frame(boto_session, name: str):
    """The whole history of one experiment as a DataFrame, one row per run: `run`,
    `trial_component`, each parameter, and each metric's last value.

    ExperimentAnalytics is the SDK's way; where its search is unsupported (some partitions)
    the trial components of the run group are listed and described instead, into the same
    columns.
    """
    import pandas as pd
    from sagemaker.core.analytics import ExperimentAnalytics

    session = sdk_session(boto_session)
    try:
        frame = ExperimentAnalytics(experiment_name=name, sagemaker_session=session).dataframe()
        if not frame.empty:
            return _history_columns(frame)
    except Exception:
        pass
    client = boto_session.client("sagemaker")
    rows, kwargs = [], {"TrialName": run_group(name)}
    while True:
        try:
            page = client.list_trial_components(**kwargs)
        except Exception:
            break
        for summary in page.get("TrialComponentSummaries", []):
            detail = client.describe_trial_component(
                TrialComponentName=summary["TrialComponentName"])
            row = {"run": detail.get("DisplayName") or detail["TrialComponentName"],
                   "trial_component": detail["TrialComponentName"]}
            for key, param in sorted((detail.get("Parameters") or {}).items()):
                row[key] = param.get("NumberValue", param.get("StringValue"))
            for metric in detail.get("Metrics") or []:
                row[metric["MetricName"]] = metric.get("Last")
            rows.append(row)
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return pd.DataFrame(rows)


def _history_columns(frame):
    """ExperimentAnalytics' frame in history_frame's columns: `<metric> - Last` becomes
    `<metric>`; the other statistics, artifacts and parent lists are left out."""
    renamed = {"DisplayName": "run", "TrialComponentName": "trial_component"}
    keep = []
    for column in frame.columns:
        if column in renamed:
            keep.append(column)
        elif column.endswith(" - Last"):
            renamed[column] = column.removesuffix(" - Last")
            keep.append(column)
        elif " - " not in column and column not in ("Trials", "Experiments"):
            keep.append(column)  # parameters, SourceArn
    frame = frame[keep].rename(columns=renamed)
    first = [c for c in ("run", "trial_component") if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]
