"""SageMaker Experiments as the service keeps them, where moto 5.2.5 does not (patched into
moto's SageMaker responses by patches.py, for the emulator's lifetime):

* A job created with an ExperimentConfig gets a trial component of its own,
  ``<job>-aws-training-job``, in the config's trial, with a Source (the job's ARN, type
  SageMakerTrainingJob) that DescribeTrialComponent shows and ListTrialComponents shows as
  TrialComponentSource.
* A tuning job's trials are filed by the service itself: "A hyperparameter tuning job
  automatically creates Amazon SageMaker experiments, trials, and trial components for each
  training job that it runs" (CreateHyperParameterTuningJob, API reference and botocore's
  service model). The experiment is ``<tuning job>-aws-tuning-job`` (the name Apache
  Airflow's SageMaker system test, tests/system/providers/amazon/aws/example_sagemaker.py,
  deletes after its tuning job), and each trial job's component is its
  ``<job>-aws-training-job``, as for any job (the SageMaker Experiments example
  sagemaker-experiments/associate-hyper-parameter-tuning-job associates exactly those with a
  trial of one's own). The trials' own names are not documented: the emulator names one trial
  per training job ``<job>-aws-trial``, which sm-pytest never reads (:func:`file_tuning_trial`).
* A trial component can be in several trials, as on AWS ("A trial component can be used in
  multiple trials", CreateTrialComponent): moto keeps one trial per component, so
  ListTrialComponents' TrialName filter reads the trial's own list too.
* ListTrialComponents summaries carry TrialComponentSource, DisplayName and Status, and
  its ExperimentName filter works.
* AssociateTrialComponent refuses a 51st component in one trial, those SageMaker created
  itself not counted, with the service's ResourceLimitExceeded, and a component that does
  not exist with ResourceNotFound (moto answered with an internal error).
* CreateExperiment, CreateTrial and CreateTrialComponent refuse a name that exists (moto
  replaced the entity, emptying a trial and dropping a run's display name and status), so
  the SDK's load-or-create loads it, as on AWS.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceNotFound, SagemakerClientError
from moto.sagemaker.models import FakeTrainingJob, FakeTrialComponent, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

from sm_pytest.sagemaker.names import job_component_name, run_group

TRIAL_COMPONENT_LIMIT = 50
TUNING_EXPERIMENT_SUFFIX = "-aws-tuning-job"
TUNING_TRIAL_SUFFIX = "-aws-trial"  # the emulator's choice: AWS does not document it
LIMIT_MESSAGE = (
    "The account-level service limit 'Total number of trial components allowed in a single"
    " trial, excluding those automatically created by SageMaker' is {limit} Trial Components,"
    " with current utilization of {used} Trial Components and a request delta of 1 Trial"
    " Components. Please contact AWS support to request an increase for this limit."
)


class ResourceLimitExceeded(SagemakerClientError):
    code = "ResourceLimitExceeded"


class AlreadyExists(SagemakerClientError):
    code = "ValidationException"


# moto's own handlers, taken before patches.py patches SageMakerResponse.
_MOTO = {name: getattr(SageMakerResponse, name) for name in (
    "create_experiment", "create_trial", "create_trial_component")}


def _create_once(operation: str, param: str, kind: str, table: str):
    def create(response: Any) -> Any:
        name = response._get_param(param)
        backend = response.sagemaker_backend
        if name in getattr(backend, table):
            arn = arn_formatter(f"experiment-{kind}" if kind != "experiment" else kind, name,
                                backend.account_id, backend.region_name)
            kind_shown = kind.replace("-", " ")
            raise AlreadyExists(f'Cannot create already existing {kind_shown} "{arn}".')
        return _MOTO[operation](response)
    return create


def _in_trial(backend: Any, component: Any, trial: str) -> bool:
    """Whether `component` is in `trial`: moto keeps only the last trial it was associated
    with on the component, and every trial's list of its components."""
    listed = backend.trials.get(trial)
    return component.trial_name == trial or (
        listed is not None and component.trial_component_name in listed.trial_components)


def _runs_in(backend: Any, trial: str) -> int:
    return sum(1 for c in backend.trial_components.values()
               if _in_trial(backend, c, trial) and not getattr(c, "source", None))


def add_job_component(backend: Any, job_name: str, job_arn: str,
                      experiment_config: dict | None) -> None:
    """The trial component SageMaker makes for a job started with `experiment_config`."""
    trial = (experiment_config or {}).get("TrialName")
    if not trial:
        return
    name = job_component_name(job_name)
    component = FakeTrialComponent(
        account_id=backend.account_id, region_name=backend.region_name,
        trial_component_name=name, display_name=name, start_time=utcnow(), end_time=None,
        parameters=None, input_artifacts=None, output_artifacts=None, metadata_properties=None,
        status={"PrimaryStatus": "InProgress"}, trial_name=trial, tags=[])
    component.source = {"SourceArn": job_arn, "SourceType": "SageMakerTrainingJob"}
    backend.trial_components[name] = component
    if trial in backend.trials:
        backend.trials[trial].trial_components.append(name)


def file_tuning_trial(account: str, region: str, tuning_job: str, job_name: str,
                      job_arn: str) -> None:
    """What SageMaker files in Experiments for a trial `job_name` of `tuning_job`: the
    experiment ``<tuning job>-aws-tuning-job`` (made with the first trial), a trial of its
    own in it, and the job's ``<job>-aws-training-job`` component there (module docstring)."""
    backend = sagemaker_backends[account][region]
    experiment = tuning_job + TUNING_EXPERIMENT_SUFFIX
    if experiment not in backend.experiments:
        backend.create_experiment(experiment)
    trial = job_name + TUNING_TRIAL_SUFFIX
    if trial not in backend.trials:
        backend.create_trial(trial, experiment)
    add_job_component(backend, job_name, job_arn, {"TrialName": trial})


def associate_trial_component(response: Any) -> Any:
    trial = response._get_param("TrialName")
    name = response._get_param("TrialComponentName")
    backend = response.sagemaker_backend
    component = backend.trial_components.get(name)
    if component is None:
        arn = FakeTrialComponent.arn_formatter(name, backend.account_id, backend.region_name)
        raise ResourceNotFound(message=f"Trial Component '{arn}' does not exist.")
    if not _in_trial(backend, component, trial) and not getattr(component, "source", None):
        used = _runs_in(backend, trial)
        if used >= TRIAL_COMPONENT_LIMIT:
            raise ResourceLimitExceeded(LIMIT_MESSAGE.format(limit=TRIAL_COMPONENT_LIMIT,
                                                             used=used))
    return ActionResult(backend.associate_trial_component(trial, name))


def list_trial_components(response: Any) -> Any:
    backend = response.sagemaker_backend
    page, next_token = backend.list_trial_components(
        NextToken=response._get_param("NextToken"),
        MaxResults=response._get_param("MaxResults"))
    # moto would match each component's last trial only; a page may come back short, as the
    # API allows.
    trial = response._get_param("TrialName")
    if trial:
        page = [c for c in page if _in_trial(backend, c, trial)]
    experiment = response._get_param("ExperimentName")
    if experiment:  # moto ignores this filter
        trials = [t.trial_name for t in backend.trials.values()
                  if t.experiment_name == experiment]
        page = [c for c in page if any(_in_trial(backend, c, t) for t in trials)]
    summaries = []
    for component in page:
        summary = {"TrialComponentName": component.trial_component_name,
                   "TrialComponentArn": component.arn,
                   "DisplayName": component.display_name,
                   "CreationTime": component.creation_time,
                   "LastModifiedTime": component.last_modified_time}
        if getattr(component, "source", None):
            summary["TrialComponentSource"] = dict(component.source)
        if component.status:
            summary["Status"] = dict(component.status)
        summaries.append(summary)
    return ActionResult({"TrialComponentSummaries": summaries, "NextToken": next_token})


def record_earlier_runs(account: str, region: str, experiment: str, runs: int) -> None:
    """`runs` finished runs of an earlier session in `experiment`'s run group, each with its
    job's own component, as SageMaker would hold them (for tests of the quota)."""
    backend = sagemaker_backends[account][region]
    trial = run_group(experiment)
    if experiment not in backend.experiments:
        backend.create_experiment(experiment)
    if trial not in backend.trials:
        backend.create_trial(trial, experiment)
    first = _runs_in(backend, trial)
    for index in range(first, first + runs):
        job = f"{experiment}-earlier-{index:03d}"[-59:].lstrip("-")
        name = f"{experiment}-{job}"
        backend.create_trial_component(
            trial_component_name=name, trial_name=trial,
            status={"PrimaryStatus": "Completed"}, start_time=None, end_time=None,
            display_name=None, parameters=None, input_artifacts=None, output_artifacts=None,
            metadata_properties=None)
        backend.trials[trial].trial_components.append(name)
        add_job_component(backend, job, FakeTrainingJob.arn_formatter(job, account, region),
                          {"TrialName": trial})


PATCHES = {
    "associate_trial_component": associate_trial_component,
    "list_trial_components": list_trial_components,
    "create_experiment": _create_once("create_experiment", "ExperimentName", "experiment",
                                      "experiments"),
    "create_trial": _create_once("create_trial", "TrialName", "trial", "trials"),
    "create_trial_component": _create_once("create_trial_component", "TrialComponentName",
                                           "trial-component", "trial_components"),
}
