"""The moto patches of the emulator: installed while an Emulator runs, answering to it.

    from sm_pytest.sagemaker.emulator import patches

    patches.activate(host)      # the handlers answer to this RequestHost (the Emulator)
    patches.install()           # after mock_aws() started
    ...
    patches.uninstall()         # moto's own handlers again
    patches.deactivate(host)

A patched handler with no active host behaves as moto's own. What a handler needs of the
running Emulator is :class:`RequestHost`; the job a CreateTrainingJob starts is the host's
(:meth:`RequestHost.start_job`), and only its public side is used here.

What is patched, and why (moto 5.2.5; a different moto major.minor is refused at import,
because these are moto internals):

* ``SageMakerResponse.create_training_job``: moto's backend never sees Environment or
  RetryStrategy, overwrites AlgorithmSpecification.MetricDefinitions in place, fakes
  FinalMetricDataList, marks the job Completed at once and accepts duplicate names. The
  patch keeps moto storing the job (so Describe/List work), then restores what was sent,
  refuses duplicates (ResourceInUse), captures the raw request, and starts the job thread.
* ``SageMakerResponse.stop_training_job``: moto has none (it raised NotImplementedError).
* ``SageMakerResponse.describe_training_job``: the same as moto's, but read under the
  emulator's lock, so a response never mixes two states of a job, with every keep-alive
  job's WarmPoolStatus brought up to date first (pools end when their time is up).
* Warm pools and Service Quotas (:mod:`sm_pytest.sagemaker.emulator.pool_handlers`, which
  says what and why): ``update_training_job`` (moto has none: KeepAlivePeriodInSeconds ends
  or extends a pool), ``list_training_jobs`` (read under the lock, with WarmPoolStatus and
  its WarmPoolStatusEquals filter), and Service Quotas' ``call_action`` (strict like the
  others, denied after ``Emulator.deny_service_quotas``) and its warm-pool quotas for
  service code ``sagemaker``.
* ``SageMakerResponse.call_action``: injected errors (``Emulator.throttle``) for any
  SageMaker operation, serialized by moto as real AWS errors (botocore ClientError); then
  the strict check below.
* Strict checking, always on: ``call_action`` of ``SageMakerResponse``, ``LogsResponse`` and
  ``SageMakerMetricsResponse`` (BatchPutMetrics, which sagemaker-core's ``Run.log_metric``
  sends), and ``S3Response._bucket_response`` / ``_key_response``, check every request
  against the botocore service model before moto handles it
  (:mod:`sm_pytest.sagemaker.emulator.service_rules`: required members, lengths and sizes,
  whole-value patterns, enums, numeric ranges). A violation is answered as AWS answers it, a
  ValidationException (HTTP 400) worded as AWS words it and serialised by moto in the
  service's protocol (:mod:`sm_pytest.sagemaker.emulator.refusals`), and recorded in the
  emulator's ``refused``; moto never sees the request.
  SageMaker and CloudWatch Logs speak JSON (and the metrics API carries every member in its
  JSON body), so the body is the parameters, exactly as sent. S3 speaks rest-xml: moto's own
  router and request parser (``moto.core.routing``, ``moto.core.parse``) rebuild the
  operation and its parameters from the path, query, headers and body, and those are
  checked. For S3 that covers the few constraints its model carries (CopySource's pattern,
  required members, enums such as ChecksumAlgorithm) plus S3's bucket naming rules on
  CreateBucket, answered with InvalidBucketName as S3 does. Not checked for S3: the rules
  its model does not carry (key length, tag sets, object size), and requests moto cannot
  route or parse (left to moto, logged at DEBUG).
* ``LogsResponse.get_log_events``, only after ``Emulator.paginate_logs``: small pages
  and empty pages mid-stream, as the real service may serve them
  (:mod:`sm_pytest.sagemaker.emulator.logs`, which installs that one itself).
* ``SageMakerResponse.search``: moto refuses the ``Parents.ExperimentName`` filter that
  sagemaker-core's ``ExperimentAnalytics`` sends ("Unknown property name"), and its
  trial-component results lack Metrics and Parents. For ExperimentTrialComponent the patch
  answers that filter from the experiment's trials and returns whole trial components, as
  AWS does; every other search is moto's.

Hyperparameter tuning jobs (Create, Describe, Stop and ListTrainingJobsForHyperParameterTuningJob)
run real trials: :mod:`sm_pytest.sagemaker.emulator.tuning`.

Experiments (CreateExperiment, CreateTrial, CreateTrialComponent, DescribeTrialComponent)
go to moto; :mod:`sm_pytest.sagemaker.emulator.trial_components` adds what the service does and
moto does not: the job's own trial component ``<job>-aws-training-job`` (with its
TrialComponentSource), the 50-components-per-trial limit on AssociateTrialComponent, and
ListTrialComponents summaries with TrialComponentSource and Status. sagemaker-core's
``Run``, ``load_run`` and ``ExperimentAnalytics`` work inside the emulator.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import re
from contextlib import AbstractContextManager
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING, Any, Protocol
from xml.etree import ElementTree as ETree

PATCHED_MOTO_VERSION = "5.2.5"


def _check_moto_version() -> None:
    installed = _dist_version("moto")
    if installed.split(".")[:2] != PATCHED_MOTO_VERSION.split(".")[:2]:
        raise ImportError(
            f"sm_pytest.sagemaker.emulator patches moto internals and was written against "
            f"moto {PATCHED_MOTO_VERSION}; moto {installed} is installed. Install "
            f"moto[s3,sagemaker,logs]=={PATCHED_MOTO_VERSION} (or re-check the patches in "
            "sm_pytest/sagemaker/emulator/ against the new moto and move the pin)."
        )


_check_moto_version()

from botocore import xform_name  # noqa: E402
from moto.core.exceptions import ServiceException  # noqa: E402
from moto.core.parse import RequestParserError, RestXMLParser  # noqa: E402
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402
from moto.core.routing import get_service_router  # noqa: E402
from moto.core.utils import utcnow  # noqa: E402
from moto.logs.responses import LogsResponse  # noqa: E402
from moto.s3.exceptions import InvalidBucketName  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError  # noqa: E402
from moto.sagemaker.models import FakeTrainingJob  # noqa: E402
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402
from moto.sagemakermetrics.responses import SageMakerMetricsResponse  # noqa: E402
from werkzeug.exceptions import NotFound  # noqa: E402

from sm_pytest.sagemaker.emulator import (  # noqa: E402
    pool_handlers,
    refusals,
    service_rules,
    trial_components,
    tuning,
)

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.jobs import JobRunner

__all__ = ["PATCHED_MOTO_VERSION", "RequestHost", "activate", "active", "deactivate",
           "install", "uninstall"]

logger = logging.getLogger(__name__)

class RequestHost(Protocol):
    """What the patched handlers need of the running emulator."""

    #: Held while a stored job is read or changed (see jobs.py); reentrant.
    lock: AbstractContextManager[Any]
    #: Job name -> the runner of every job this emulator started.
    jobs: dict[str, JobRunner]

    def record_call(self, action: str) -> tuple[str, str] | None:
        """Record a SageMaker call; the (code, message) to fail it with, if one is due."""
        ...

    def record_refusal(self, operation: str, text: str) -> None:
        """Record a request refused for breaking the service's rules."""
        ...

    def start_job(self, name: str, request: dict[str, Any], stored: Any, *, account: str,
                  region: str) -> None:
        """Run the job just created from ``request`` (moto's ``stored`` job shows it)."""
        ...

    def sync_warm_pools(self) -> None:
        """Bring every keep-alive job's stored WarmPoolStatus up to date (under the lock)."""
        ...

    def update_warm_pool(self, name: str, keep_alive: int) -> None:
        """UpdateTrainingJob's KeepAlivePeriodInSeconds for the job (under the lock);
        ValueError, with the message to answer, when the job has no pool to change."""
        ...

    def service_quotas_denial(self, operation: str) -> tuple[str, str] | None:
        """The (code, message) every Service Quotas call fails with, if it is denied."""
        ...

    def warm_pool_quotas(self) -> dict[str, float]:
        """The emulated warm-pool quota of each instance type that has one (others: 0)."""
        ...


_ACTIVE: RequestHost | None = None
# (class, name) -> (defined on the class itself?, the function before patching)
_SAVED: dict[tuple[type, str], tuple[bool, Any]] = {}


def active() -> RequestHost | None:
    """The host the patched handlers answer to, if any."""
    return _ACTIVE


def activate(host: RequestHost) -> None:
    """Make ``host`` the one the patched handlers answer to (the caller makes sure that no
    other one is)."""
    global _ACTIVE
    _ACTIVE = host


def deactivate(host: RequestHost) -> None:
    """The handlers answer to nobody again, if ``host`` was the one."""
    global _ACTIVE
    if _ACTIVE is host:
        _ACTIVE = None


def _original(name: str, cls: type = SageMakerResponse) -> Any:
    return _SAVED[(cls, name)][1]


def _patched_call_action(self: SageMakerResponse) -> Any:
    emu = active()
    if emu is not None:
        action = self._get_action()
        error = emu.record_call(action)
        if error is not None:
            return refusals.json_error(self, *error)
        refusal = refusals.refusal(emu, "sagemaker", action, refusals.json_params(self.body))
        if refusal is not None:
            return refusals.serialized_error(self, refusals.RequestRefused(refusal))
    return _original("call_action")(self)


def _strict_call_action(self: Any) -> Any:
    """call_action of CloudWatch Logs and SageMaker's metrics API: their parameters are the
    JSON body (BatchPutMetrics' members are all in its body too)."""
    emu = active()
    if emu is not None:
        refusal = refusals.refusal(emu, self.service_name, self._get_action(),
                                   refusals.json_params(self.body))
        if refusal is not None:
            return refusals.serialized_error(self, refusals.RequestRefused(refusal))
    return _original("call_action", type(self))(self)


def _checked_s3(name: str) -> Any:
    """S3Response.<name> (its bucket and its key entry points), answering a request S3
    would refuse before moto sees it."""
    def patched(self: S3Response, request: Any, full_url: str) -> Any:
        error = _check_s3_request(self)
        if error is not None:
            return self.serialized(ActionResult(error))
        return _original(name, S3Response)(self, request, full_url)

    patched.__name__ = f"_checked_s3{name}"
    return patched


def _check_s3_request(response: S3Response) -> ServiceException | None:
    """The error S3 answers a request it refuses (moto serialises it as S3 does), or None.

    S3 is rest-xml: the parameters are spread over the path, the query, the headers and the
    body. moto's own router and request parser (those of its newer services) rebuild the
    operation and its parameters from the request, and those are checked like a JSON body.
    A request moto cannot route or parse is left to moto, which answers it as before."""
    emu = active()
    if emu is None:
        return None
    request = response.normalized_request
    try:
        operation, uri_params = get_service_router("s3").match(request)
        params = RestXMLParser(operation).parse({
            "method": request.method, "values": request.values, "headers": request.headers,
            "body": response.body, "url_path": request.path, "url_params": uri_params,
        })
    except (NotFound, RequestParserError, ETree.ParseError, ValueError, KeyError) as exc:
        logger.debug("strict emulator: S3 request %s %s not checked (%r)", request.method,
                     request.path, exc)
        return None
    bucket = params.get("Bucket") or ""
    if operation.name == "CreateBucket" and service_rules.bucket_name_problem(bucket):
        error = InvalidBucketName()
        emu.record_refusal(operation.name, error.message)
        return error
    refusal = refusals.refusal(emu, "s3", operation.name, params)
    return refusals.RequestRefused(refusal) if refusal is not None else None


def _patched_create_training_job(self: SageMakerResponse) -> Any:
    emu = active()
    if emu is None:
        return _original("create_training_job")(self)
    raw = json.loads(self.body) if self.body else {}
    name = raw.get("TrainingJobName") or self._get_param("TrainingJobName")
    backend = self.sagemaker_backend
    algorithm = raw.get("AlgorithmSpecification") or {}
    for definition in algorithm.get("MetricDefinitions") or []:
        try:
            re.compile(definition.get("Regex", ""))
        except re.error as exc:
            raise ValidationError(
                message=f"Invalid Regex for metric {definition.get('Name')!r}: {exc}"
            ) from exc
    with emu.lock:
        if name in backend.training_jobs:
            arn = backend.training_jobs[name].arn
            raise ResourceInUseException(
                "Training job names must be unique within an AWS account and region, and "
                f"a training job with this name already exists ({arn})"
            )
        result = _original("create_training_job")(self)
        stored = backend.training_jobs[name]
        _adopt(stored, raw)
        trial_components.add_job_component(backend, name, stored.arn, raw.get("ExperimentConfig"))
        emu.start_job(name, raw, stored, account=self.current_account, region=self.region)
    return result


def _adopt(stored: Any, raw: dict[str, Any]) -> None:
    """Make moto's stored job show what was sent, and the state of a job just created.

    Every attribute the job thread will ever set is created here (see jobs.py)."""
    now = utcnow()
    stored.algorithm_specification = copy.deepcopy(raw.get("AlgorithmSpecification") or {})
    members = _describe_members()
    for key, value in raw.items():
        attribute = _moto_attribute(key)
        if key in members and attribute and attribute not in stored.__dict__:
            setattr(stored, attribute, copy.deepcopy(value))
    stored.creation_time = stored.last_modified_time = now
    stored.training_job_status = "InProgress"
    stored.secondary_status = "Starting"
    stored.secondary_status_transitions = [
        {"Status": "Starting", "StartTime": now,
         "StatusMessage": "Launching requested ML instances"}
    ]
    stored.training_start_time = None
    stored.training_end_time = None
    stored.final_metric_data_list = []
    stored.failure_reason = None
    stored.training_time_in_seconds = None
    stored.billable_time_in_seconds = None
    stored.warm_pool_status = None  # keep-alive jobs: set by the host's start_job


def _patched_describe_training_job(self: SageMakerResponse) -> Any:
    emu = active()
    if emu is None:
        return _original("describe_training_job")(self)
    name = self._get_param("TrainingJobName")
    with emu.lock:
        emu.sync_warm_pools()
        response = copy.deepcopy(self.sagemaker_backend.describe_training_job(name))
    return ActionResult(response)


def _patched_stop_training_job(self: SageMakerResponse) -> Any:
    emu = active()
    name = self._get_param("TrainingJobName")
    backend = self.sagemaker_backend
    lock = emu.lock if emu is not None else contextlib.nullcontext()
    with lock:
        stored = backend.training_jobs.get(name)
        if stored is None:
            arn = FakeTrainingJob.arn_formatter(name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find training job '{arn}'.")
        status = stored.training_job_status
        if status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the training job is in status "
                f"{status}."
            )
        runner = emu.jobs.get(name) if emu is not None else None
        if runner is not None and not runner.done.is_set():
            runner.request_stop()
        else:  # a job this emulator does not run (created before it started)
            now = utcnow()
            stored.training_job_status = stored.secondary_status = "Stopped"
            stored.last_modified_time = stored.training_end_time = now
    return EmptyResult()


def _patched_search(self: SageMakerResponse) -> Any:
    resource = self._get_param("Resource")
    expression = copy.deepcopy(self._get_param("SearchExpression") or {})
    if active() is None or resource != "ExperimentTrialComponent":
        return _original("search")(self)
    filters = expression.get("Filters") or []
    by_experiment = [f for f in filters if f.get("Name") == "Parents.ExperimentName"]
    expression["Filters"] = [f for f in filters if f not in by_experiment]
    backend = self.sagemaker_backend
    found = backend.search(resource=resource, search_expression=expression)["Results"]
    names = [result["TrialComponent"]["TrialComponentName"] for result in found]
    results = []
    for name in names:
        component = backend.trial_components[name]
        # moto's CreateTrial replaces an existing trial (AWS refuses it), which empties its
        # list of components; the component's own trial_name survives that.
        parents = [{"TrialName": trial.trial_name, "ExperimentName": trial.experiment_name}
                   for trial in backend.trials.values()
                   if name in trial.trial_components or trial.trial_name == component.trial_name]
        if all(any(_matches(p["ExperimentName"], f) for p in parents) for f in by_experiment):
            results.append({"TrialComponent": {**component.response_object, "Parents": parents}})
    return ActionResult({"Results": results})


def _matches(value: str, search_filter: dict) -> bool:
    operator, expected = search_filter.get("Operator", "Equals"), search_filter.get("Value")
    if operator == "NotEquals":
        return value != expected
    if operator == "Contains":
        return expected in value
    return value == expected


_PATCHES = {
    "search": _patched_search,
    "call_action": _patched_call_action,
    "create_training_job": _patched_create_training_job,
    "describe_training_job": _patched_describe_training_job,
    "stop_training_job": _patched_stop_training_job,
    **pool_handlers.training_job_handlers(active, _original),
    **trial_components.PATCHES,
    **tuning.handlers(active),
}


# The strict checks of the other services: every request is checked against the service
# model before moto handles it (see service_rules).
_OTHER_PATCHES: dict[tuple[type, str], Any] = {
    (LogsResponse, "call_action"): _strict_call_action,
    (SageMakerMetricsResponse, "call_action"): _strict_call_action,
    (S3Response, "_bucket_response"): _checked_s3("_bucket_response"),
    (S3Response, "_key_response"): _checked_s3("_key_response"),
    **pool_handlers.service_quotas_handlers(active, _original),
}


def _all_patches() -> list[tuple[type, str, Any]]:
    return ([(SageMakerResponse, name, f) for name, f in _PATCHES.items()]
            + [(cls, name, f) for (cls, name), f in _OTHER_PATCHES.items()])


def install() -> None:
    """Put the patched handlers in place of moto's (after ``mock_aws()`` started)."""
    for cls, name, function in _all_patches():
        _SAVED[(cls, name)] = (name in cls.__dict__, getattr(cls, name, None))
        setattr(cls, name, function)


def uninstall() -> None:
    """moto's own handlers again (those this module replaced)."""
    for cls, name, _ in _all_patches():
        if (cls, name) not in _SAVED:
            continue
        own, function = _SAVED.pop((cls, name))
        if own:
            setattr(cls, name, function)
        else:
            with contextlib.suppress(AttributeError):
                delattr(cls, name)


@functools.lru_cache(maxsize=1)
def _describe_members() -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.operation_model("DescribeTrainingJob").output_shape.members)


def _moto_attribute(key: str) -> str | None:
    """The FakeTrainingJob attribute that moto's gen_response_object shows as ``key``."""
    attribute = xform_name(key)
    shown = "".join(w.title() for w in attribute.split("_")) if "_" in attribute else (
        attribute[:1].upper() + attribute[1:])
    return attribute if shown == key else None

