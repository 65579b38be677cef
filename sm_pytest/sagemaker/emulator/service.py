"""An in-process SageMaker + S3 + CloudWatch Logs emulator that really runs training jobs.

    from sm_pytest.sagemaker.emulator.service import Emulator

    with Emulator(region="us-east-1") as emu:
        ...  # boto3 / sagemaker.core code that creates training jobs, in any thread
        emu.wait_idle(timeout=60)
        emu.requests          # every accepted CreateTrainingJob request, exactly as sent
        emu.refused           # (operation, message) of every request AWS would refuse

It starts moto's ``mock_aws()`` in this process and patches moto's SageMaker *response*
layer, so that CreateTrainingJob runs the job the way a SageMaker script-mode container
would (see ``_emulator_job.py``): sourcedir.tar.gz and the channels come from emulated S3,
the container tree and the program's arguments and ``SM_*`` variables come from
:mod:`sm_pytest.run.contract`, the program runs as a subprocess in its own process group, its
output becomes CloudWatch log events in ``/aws/sagemaker/TrainingJobs`` (stream
``<job>/algo-1-<epoch seconds>``, one per attempt), and model.tar.gz, output.tar.gz and the
checkpoints go back to S3. DescribeTrainingJob then shows what a real job shows: InProgress
with SecondaryStatus Starting -> Downloading -> Training -> Uploading, then Completed,
Failed (FailureReason ``AlgorithmError: <the failure file>, exit code: 1``) or Stopped
(SecondaryStatus Stopped, MaxRuntimeExceeded or MaxWaitTimeExceeded), real
FinalMetricDataList values from the request's MetricDefinitions, timings, and the
SecondaryStatusTransitions.

What is patched, and why (moto 5.2.5; a different moto major.minor is refused at import,
because these are moto internals):

* ``SageMakerResponse.create_training_job``: moto's backend never sees Environment or
  RetryStrategy, overwrites AlgorithmSpecification.MetricDefinitions in place, fakes
  FinalMetricDataList, marks the job Completed at once and accepts duplicate names. The
  patch keeps moto storing the job (so Describe/List work), then restores what was sent,
  refuses duplicates (ResourceInUse), captures the raw request, and starts the job thread.
* ``SageMakerResponse.stop_training_job``: moto has none (it raised NotImplementedError).
* ``SageMakerResponse.describe_training_job`` / ``list_training_jobs``: the same as moto's,
  but read under the emulator's lock, so a response never mixes two states of a job.
* ``SageMakerResponse.call_action``: injected errors (:meth:`Emulator.throttle`) for any
  SageMaker operation, serialized by moto as real AWS errors (botocore ClientError); then
  the strict check below.
* Strict checking, always on: ``call_action`` of ``SageMakerResponse``, ``LogsResponse`` and
  ``SageMakerMetricsResponse`` (BatchPutMetrics, which sagemaker-core's ``Run.log_metric``
  sends), and ``S3Response._bucket_response`` / ``_key_response``, check every request
  against the botocore service model before moto handles it
  (:mod:`sm_pytest.sagemaker.emulator.service_rules`: required members, lengths and sizes,
  whole-value patterns, enums, numeric ranges). A violation is answered as AWS answers it, a
  ValidationException (HTTP 400) worded as AWS words it and serialised by moto in the
  service's protocol, and recorded in ``Emulator.refused``; moto never sees the request.
  SageMaker and CloudWatch Logs speak JSON (and the metrics API carries every member in its
  JSON body), so the body is the parameters, exactly as sent. S3 speaks rest-xml: moto's own
  router and request parser (``moto.core.routing``, ``moto.core.parse``) rebuild the
  operation and its parameters from the path, query, headers and body, and those are
  checked. For S3 that covers the few constraints its model carries (CopySource's pattern,
  required members, enums such as ChecksumAlgorithm) plus S3's bucket naming rules on
  CreateBucket, answered with InvalidBucketName as S3 does. Not checked for S3: the rules
  its model does not carry (key length, tag sets, object size), and requests moto cannot
  route or parse (left to moto, logged at DEBUG).
* ``LogsResponse.get_log_events``, only after :meth:`Emulator.paginate_logs`: small pages
  and empty pages mid-stream, as the real service may serve them (``_emulator_logs.py``).

* ``SageMakerResponse.search``: moto refuses the ``Parents.ExperimentName`` filter that
  sagemaker-core's ``ExperimentAnalytics`` sends ("Unknown property name"), and its
  trial-component results lack Metrics and Parents. For ExperimentTrialComponent the patch
  answers that filter from the experiment's trials and returns whole trial components, as
  AWS does; every other search is moto's.

Experiments (CreateExperiment, CreateTrial, CreateTrialComponent, DescribeTrialComponent)
go to moto; ``_emulator_experiments.py`` adds what the service does and moto does not: the
job's own trial component ``<job>-aws-training-job`` (with its TrialComponentSource), the
50-components-per-trial limit on AssociateTrialComponent, and ListTrialComponents summaries
with TrialComponentSource and Status. sagemaker-core's ``Run``, ``load_run`` and
``ExperimentAnalytics`` work inside the emulator.

Retries: the emulator sets ``AWS_MAX_ATTEMPTS=1`` (``max_attempts``) and
``AWS_RETRY_MODE=standard`` for its lifetime, so that an injected ThrottlingException
reaches the caller instead of being absorbed by botocore's own retries (sagemaker-core then
also keeps its hands off: it adds its 10-attempt default only when neither is set). Pass
``max_attempts=None`` to leave botocore's retry settings alone.

Also for its lifetime: fake credentials and the region in the environment, any
AWS_PROFILE / endpoint / web-identity settings removed, an empty AWS config and credentials
file, and a SageMaker SDK config (SAGEMAKER_USER_CONFIG_OVERRIDE and
SAGEMAKER_ADMIN_CONFIG_OVERRIDE) that opts out of telemetry. Everything is restored after.

Limits: script mode only (sagemaker_program + an s3:// sagemaker_submit_directory); one
instance (algo-1) whatever InstanceCount says; S3Prefix channels in File/FastFile mode;
CheckpointConfig.LocalPath is not relocated (the program gets SM_CHECKPOINT_DIR);
checkpoints are synced to S3 at the end of each attempt, not continuously; the image is not
used (the program runs with this interpreter, nothing is pip-installed).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ETree

PATCHED_MOTO_VERSION = "5.2.5"


def _check_moto_version() -> None:
    installed = _dist_version("moto")
    if installed.split(".")[:2] != PATCHED_MOTO_VERSION.split(".")[:2]:
        raise ImportError(
            f"sm_pytest.sagemaker.emulator.service patches moto internals and was written against "
            f"moto {PATCHED_MOTO_VERSION}; moto {installed} is installed. Install "
            f"moto[s3,sagemaker,logs]=={PATCHED_MOTO_VERSION} (or re-check the patches in "
            "sm_pytest/sagemaker/emulator.py against the new moto and move the pin)."
        )


_check_moto_version()

import boto3  # noqa: E402
from botocore import xform_name  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto import mock_aws  # noqa: E402
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

from sm_pytest.sagemaker.aws import parse_s3_uri  # noqa: E402
from sm_pytest.sagemaker.cloudwatch import LOG_GROUP, read_stream  # noqa: E402
from sm_pytest.sagemaker.emulator import experiments as _emulator_experiments  # noqa: E402
from sm_pytest.sagemaker.emulator import logs as _emulator_logs  # noqa: E402
from sm_pytest.sagemaker.emulator import service_rules  # noqa: E402
from sm_pytest.sagemaker.emulator.jobs import JobRunner, SpotArm, relative_key  # noqa: E402

__all__ = ["LOG_GROUP", "PATCHED_MOTO_VERSION", "Emulator", "EmulatorError"]

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"
TELEMETRY_OPT_OUT_YAML = (
    "SchemaVersion: '1.0'\n"
    "SageMaker:\n"
    "  PythonSDK:\n"
    "    Modules:\n"
    "      TelemetryOptOut: true\n"
)
# Errors that Emulator.throttle can inject get these messages unless told otherwise.
DEFAULT_ERROR_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "ResourceLimitExceeded": (
        "The account-level service limit 'ml.m5.xlarge for training job usage' is 1 Instances,"
        " with current utilization of 1 Instances and a request delta of 1 Instances. Please "
        "use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas "
        "is not available, contact AWS support to request an increase for this quota."
    ),
}
# HTTP status of injected errors (400 unless listed).
ERROR_STATUS = {
    "InternalFailure": 500,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}
# Variables that would send requests elsewhere or pick real credentials; removed for the
# emulator's lifetime (AWS_ENDPOINT_URL_<SERVICE> too).
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_CA_BUNDLE",
)


class EmulatorError(RuntimeError):
    """Misuse of the emulator (for example two at once in one process)."""


# --- the moto patches ---------------------------------------------------------------------

_ACTIVE: Emulator | None = None
_ACTIVE_LOCK = threading.Lock()
# (class, name) -> (defined on the class itself?, the function before patching)
_SAVED: dict[tuple[type, str], tuple[bool, Any]] = {}


def _active() -> Emulator | None:
    return _ACTIVE


def _original(name: str, cls: type = SageMakerResponse) -> Any:
    return _SAVED[(cls, name)][1]


def _patched_call_action(self: SageMakerResponse) -> Any:
    emu = _active()
    if emu is not None:
        action = self._get_action()
        error = emu._on_call(action)
        if error is not None:
            # SageMaker's JSON protocol error, as AWS sends it (botocore reads __type). Built
            # here rather than by moto's serializer, which warns about any code that is not
            # in the SageMaker model (ThrottlingException is not).
            code, message = error
            status = ERROR_STATUS.get(code, 400)
            headers = dict(self.response_headers)
            headers.update({"status": str(status), "x-amzn-ErrorType": code,
                            "Content-Type": "application/x-amz-json-1.1"})
            body = json.dumps({"__type": code, "message": message})
            headers, body = self._enrich_response(headers, body)
            return status, headers, body
        refusal = emu._refusal("sagemaker", action, _json_params(self.body))
        if refusal is not None:
            return _serialized_error(self, _RequestRefused(refusal))
    return _original("call_action")(self)


def _strict_call_action(self: Any) -> Any:
    """call_action of CloudWatch Logs and SageMaker's metrics API: their parameters are the
    JSON body (BatchPutMetrics' members are all in its body too)."""
    emu = _active()
    if emu is not None:
        refusal = emu._refusal(self.service_name, self._get_action(), _json_params(self.body))
        if refusal is not None:
            return _serialized_error(self, _RequestRefused(refusal))
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


class _RequestRefused(ServiceException):
    """AWS's answer to a request that breaks the service model's constraints. Defined
    outside moto, so that moto serialises it in the protocol of the service answering."""

    code = "ValidationException"


def _check_s3_request(response: S3Response) -> ServiceException | None:
    """The error S3 answers a request it refuses (moto serialises it as S3 does), or None.

    S3 is rest-xml: the parameters are spread over the path, the query, the headers and the
    body. moto's own router and request parser (those of its newer services) rebuild the
    operation and its parameters from the request, and those are checked like a JSON body.
    A request moto cannot route or parse is left to moto, which answers it as before."""
    emu = _active()
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
        emu._record_refusal(operation.name, error.message)
        return error
    refusal = emu._refusal("s3", operation.name, params)
    return _RequestRefused(refusal) if refusal is not None else None


def _json_params(body: Any) -> dict[str, Any] | None:
    """The parameters of a JSON-protocol request: its body (None if it is not JSON; moto
    then answers as it always has)."""
    try:
        params = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def _serialized_error(response: Any, error: ServiceException) -> Any:
    """``error`` answered the way moto answers a ServiceException raised by an action."""
    status, headers, body = response.serialized(ActionResult(error))
    headers, body = response._enrich_response(headers, body)
    return status, headers, body


def _patched_create_training_job(self: SageMakerResponse) -> Any:
    emu = _active()
    if emu is None:
        return _original("create_training_job")(self)
    return emu._create_training_job(self)


def _patched_describe_training_job(self: SageMakerResponse) -> Any:
    emu = _active()
    if emu is None:
        return _original("describe_training_job")(self)
    name = self._get_param("TrainingJobName")
    with emu._lock:
        response = copy.deepcopy(self.sagemaker_backend.describe_training_job(name))
    return ActionResult(response)


def _patched_list_training_jobs(self: SageMakerResponse) -> Any:
    emu = _active()
    lock = emu._lock if emu is not None else contextlib.nullcontext()
    with lock:
        result = _original("list_training_jobs")(self)
        return ActionResult(copy.deepcopy(result.result)) if hasattr(result, "result") else result


def _patched_stop_training_job(self: SageMakerResponse) -> Any:
    emu = _active()
    name = self._get_param("TrainingJobName")
    backend = self.sagemaker_backend
    lock = emu._lock if emu is not None else contextlib.nullcontext()
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
    if _active() is None or resource != "ExperimentTrialComponent":
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
    "list_training_jobs": _patched_list_training_jobs,
    "stop_training_job": _patched_stop_training_job,
    **_emulator_experiments.PATCHES,
}


# The strict checks of the other services: every request is checked against the service
# model before moto handles it (see service_rules).
_OTHER_PATCHES: dict[tuple[type, str], Any] = {
    (LogsResponse, "call_action"): _strict_call_action,
    (SageMakerMetricsResponse, "call_action"): _strict_call_action,
    (S3Response, "_bucket_response"): _checked_s3("_bucket_response"),
    (S3Response, "_key_response"): _checked_s3("_key_response"),
}


def _all_patches() -> list[tuple[type, str, Any]]:
    return ([(SageMakerResponse, name, f) for name, f in _PATCHES.items()]
            + [(cls, name, f) for (cls, name), f in _OTHER_PATCHES.items()])


def _install_patches() -> None:
    for cls, name, function in _all_patches():
        _SAVED[(cls, name)] = (name in cls.__dict__, getattr(cls, name, None))
        setattr(cls, name, function)


def _uninstall_patches() -> None:
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


# --- the emulator -------------------------------------------------------------------------


class Emulator:
    """SageMaker (training jobs), S3 and CloudWatch Logs, emulated in this process.

    Parameters:
        region: the region set in the environment (AWS_DEFAULT_REGION, AWS_REGION).
        max_attempts: AWS_MAX_ATTEMPTS for the emulator's lifetime (1: botocore retries
            nothing, so injected errors reach the caller); None leaves retry settings alone.
        stop_grace_seconds: seconds between SIGTERM and SIGKILL when a job is stopped or
            exceeds MaxRuntimeInSeconds (SageMaker gives 120).
        spot_saving: for managed spot jobs, BillableTimeInSeconds is
            floor(TrainingTimeInSeconds * (1 - spot_saving)), at least 1.
        log_flush_seconds: how often a running job's output goes to CloudWatch Logs.
        workdir: where job trees go (default: a new temporary folder, removed on exit).
        keep_workdir: keep ``workdir`` after exit (for debugging).
        python: the interpreter that runs the programs (default: this one).
    """

    def __init__(
        self,
        region: str = "us-east-1",
        *,
        max_attempts: int | None = 1,
        stop_grace_seconds: float = 2.0,
        spot_saving: float = 0.3,
        log_flush_seconds: float = 0.2,
        workdir: str | os.PathLike[str] | None = None,
        keep_workdir: bool = False,
        python: str | None = None,
    ):
        if not 0 <= spot_saving < 1:
            raise ValueError("spot_saving must be in [0, 1)")
        self.region = region
        self.max_attempts = max_attempts
        self.stop_grace_seconds = stop_grace_seconds
        self.spot_saving = spot_saving
        self.log_flush_seconds = log_flush_seconds
        self.keep_workdir = keep_workdir
        self.python = python
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None

        #: Every accepted CreateTrainingJob request, as the client sent it: the JSON body that
        #: reached the endpoint, from any client in any thread (calls refused by an injected
        #: error or as a duplicate name are in ``calls`` / ``injected`` only).
        self.requests: list[dict[str, Any]] = []
        #: Every SageMaker operation that reached the emulator, in order (throttled and
        #: refused ones included).
        self.calls: list[str] = []
        #: (operation, error code) of every injected error, in order.
        self.injected: list[tuple[str, str]] = []
        #: (operation, message) of every request refused because it breaks the service's
        #: rules (see service_rules), in order: SageMaker, S3 and CloudWatch Logs alike.
        self.refused: list[tuple[str, str]] = []
        #: Job name -> its runner (``.describe()``, ``.attempts``, ``.log_streams``, ...).
        self.jobs: dict[str, JobRunner] = {}

        self._lock = threading.RLock()
        self._streams_lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._streams: set[str] = set()
        self._groups: set[str] = set()
        self._errors: dict[str, collections.deque[tuple[str, str]]] = {}
        self._spot_arms: list[SpotArm] = []
        self._no_capacity: list[str] = []  # withhold_spot_capacity
        self._tls = threading.local()
        self._closing = False
        self._started = False
        self._env_saved: dict[str, str | None] = {}
        self._mock: Any = None
        self._session: Any = None
        self._s3: Any = None
        self._logs: Any = None

    # --- lifetime ----------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> Emulator:
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None:
                raise EmulatorError("another Emulator is already running in this process")
            if self._started:
                raise EmulatorError("an Emulator can be started once")
            _ACTIVE = self
            self._started = True
        try:
            if self._workdir_arg is not None:
                self._workdir_arg.mkdir(parents=True, exist_ok=True)
                self.workdir = Path(tempfile.mkdtemp(prefix="sm-emulator-",
                                                     dir=self._workdir_arg))
            else:
                self.workdir = Path(tempfile.mkdtemp(prefix="sm-emulator-"))
            self._set_env()
            self._mock = mock_aws()
            self._mock.start()
            _install_patches()
            self._session = boto3.session.Session(region_name=self.region)
            internal = Config(retries={"max_attempts": 3, "mode": "standard"})
            self._s3 = self.client("s3", config=internal)
            self._logs = self.client("logs", config=internal)
            for client in (self._s3, self._logs):
                client.meta.events.register("before-sign", self._add_account_header)
        except BaseException:
            self._teardown()
            raise
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Stop every running job (no uploads), then undo everything :meth:`start` did."""
        if not self._started or self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        for runner in list(self.jobs.values()):
            runner.join(max(0.0, deadline - time.monotonic()))
        self._teardown()

    def _teardown(self) -> None:
        global _ACTIVE
        self._closing = True
        with contextlib.suppress(Exception):
            _uninstall_patches()
        _emulator_logs.restore()
        if self._mock is not None:
            with contextlib.suppress(Exception):
                self._mock.stop()
            self._mock = None
        self._restore_env()
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with _ACTIVE_LOCK:
            if _ACTIVE is self:
                _ACTIVE = None

    def _set_env(self) -> None:
        assert self.workdir is not None
        config_dir = self.workdir / "config"
        config_dir.mkdir()
        (config_dir / "aws-config").write_text("", encoding="utf-8")
        (config_dir / "aws-credentials").write_text("", encoding="utf-8")
        sagemaker_config = config_dir / "sagemaker-config.yaml"
        sagemaker_config.write_text(TELEMETRY_OPT_OUT_YAML, encoding="utf-8")
        values: dict[str, str | None] = {
            name: None
            for name in os.environ
            if name in _CLEARED_ENV or name.startswith("AWS_ENDPOINT_URL")
        }
        values.update({
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_SECURITY_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sagemaker_config),
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(sagemaker_config),
        })
        if self.max_attempts is not None:
            values["AWS_MAX_ATTEMPTS"] = str(self.max_attempts)
            values["AWS_RETRY_MODE"] = "standard"
        for name, value in values.items():
            self._env_saved.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._env_saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._env_saved.clear()

    # --- the public API -----------------------------------------------------------------------

    @property
    def account_id(self) -> str:
        return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)

    def session(self) -> Any:
        """A new boto3 Session in the emulator's region."""
        return boto3.session.Session(region_name=self.region)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A new boto3 client (``region_name`` defaults to ours), made from one shared
        session, so only the first client of a service pays for loading its model."""
        kwargs.setdefault("region_name", self.region)
        with self._client_lock:  # boto3 sessions are not thread-safe; clients are
            return self._session.client(service, **kwargs)

    def throttle(
        self,
        operation: str,
        times: int = 1,
        code: str = "ThrottlingException",
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of the SageMaker ``operation`` (``CreateTrainingJob``
        or ``create_training_job``) fail with the AWS error ``code`` (ThrottlingException,
        ResourceLimitExceeded, or any other code): botocore raises ClientError with that
        code. Every HTTP attempt counts, so with botocore retries on, they absorb some."""
        if times < 1:
            raise ValueError("times must be >= 1")
        name = operation if "_" not in operation else "".join(
            w.title() for w in operation.split("_"))
        text = message or DEFAULT_ERROR_MESSAGES.get(code, f"{code} (injected by the emulator)")
        with self._lock:
            self._errors.setdefault(name, collections.deque()).extend([(code, text)] * times)

    def interrupt_spot(
        self, job_name_or_prefix: str, after_checkpoint: bool = True, *,
        after_seconds: float = 0.0,
    ) -> None:
        """Arrange one simulated spot interruption for a managed spot job whose name is (or
        starts with) ``job_name_or_prefix``: a running job, else the next one created.

        With ``after_checkpoint`` the interruption comes once the first finished checkpoint
        file is in the checkpoint dir (never, if the job ends first); otherwise
        ``after_seconds`` after the program starts. The process group is killed, the
        checkpoints are synced to CheckpointConfig.S3Uri, SecondaryStatus goes Interrupted ->
        Starting, and the job runs again in a fresh tree with the checkpoint dir filled from
        S3, logging to a new stream.
        """
        arm = SpotArm(job_name_or_prefix, after_checkpoint, after_seconds)
        with self._lock:
            for runner in self.jobs.values():
                if (runner.spot and not runner.done.is_set() and runner.spot_arm is None
                        and arm.matches(runner.job_name)):
                    runner.arm_spot(arm)
                    return
            self._spot_arms.append(arm)

    def withhold_spot_capacity(self, job_name_or_prefix: str) -> None:
        """Managed spot jobs created from now on whose name is (or starts with)
        ``job_name_or_prefix`` never get capacity: they stay InProgress / Starting until
        MaxWaitTimeInSeconds after their creation, then end Stopped / MaxWaitTimeExceeded
        without having trained, as SageMaker ends them."""
        with self._lock:
            self._no_capacity.append(job_name_or_prefix)

    def _capacity_withheld(self, job_name: str) -> bool:
        with self._lock:
            return any(SpotArm(p).matches(job_name) for p in self._no_capacity)

    def paginate_logs(self, page_size: int = 2, empty_pages: int = 3) -> Any:
        """Serve GetLogEvents as the real service may: at most ``page_size`` events a page,
        and ``empty_pages`` empty pages (with a new nextForwardToken) before each page after
        the first, until this emulator closes. Returns the paging object; its ``pages`` and
        ``empty_served`` count what it served (see ``_emulator_logs``)."""
        return _emulator_logs.paginate(page_size, empty_pages)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every job has ended; False when ``timeout`` seconds ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                running = [r for r in self.jobs.values() if not r.done.is_set()]
            if not running:
                return True
            for runner in running:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                runner.done.wait(left)
                if not runner.done.is_set():
                    return False

    def log_events(self, job_name: str) -> dict[str, list[str]]:
        """The messages of each log stream of the job, by stream name, in order."""
        runner = self.jobs[job_name]
        with self._as_account(runner.account):
            return {stream: read_stream(self._logs, stream)[0]
                    for stream in runner.log_streams}

    def upload_source(self, source_dir: str | os.PathLike[str], s3_uri: str) -> str:
        """Pack ``source_dir`` as sourcedir.tar.gz at ``s3_uri`` (the bucket must exist), the
        way ``--sm`` packs it (sm_pytest.sagemaker.uploads); returns ``s3_uri``."""
        from sm_pytest.sagemaker.uploads import pack_source_dir

        bucket, key = parse_s3_uri(s3_uri)
        archive, _ = pack_source_dir(Path(source_dir))
        self._s3.put_object(Bucket=bucket, Key=key, Body=archive)
        return s3_uri

    # --- request handling (called by the patched moto response methods) ---------------------

    def _on_call(self, action: str) -> tuple[str, str] | None:
        """Record a SageMaker call; the (code, message) to fail it with, if one is due."""
        with self._lock:
            self.calls.append(action)
            queue = self._errors.get(action)
            if not queue:
                return None
            code, message = queue.popleft()
            self.injected.append((action, code))
        return code, message

    def _refusal(self, service: str, operation: str, params: dict[str, Any] | None
                 ) -> str | None:
        """The ValidationException message for a request that breaks the service model's
        constraints (recorded in ``refused``), or None for a valid one."""
        if params is None:
            return None
        violations = service_rules.find_violations(service, operation, params)
        if not violations:
            return None
        text = service_rules.message(violations)
        self._record_refusal(operation, text)
        return text

    def _record_refusal(self, operation: str, text: str) -> None:
        with self._lock:
            self.refused.append((operation, text))
        logger.info("refused %s: %s", operation, text)

    def _create_training_job(self, response: SageMakerResponse) -> Any:
        raw = json.loads(response.body) if response.body else {}
        name = raw.get("TrainingJobName") or response._get_param("TrainingJobName")
        backend = response.sagemaker_backend
        algorithm = raw.get("AlgorithmSpecification") or {}
        for definition in algorithm.get("MetricDefinitions") or []:
            try:
                re.compile(definition.get("Regex", ""))
            except re.error as exc:
                raise ValidationError(
                    message=f"Invalid Regex for metric {definition.get('Name')!r}: {exc}"
                ) from exc
        with self._lock:
            if name in backend.training_jobs:
                arn = backend.training_jobs[name].arn
                raise ResourceInUseException(
                    "Training job names must be unique within an AWS account and region, and "
                    f"a training job with this name already exists ({arn})"
                )
            result = _original("create_training_job")(response)
            stored = backend.training_jobs[name]
            self._adopt(stored, raw)
            _emulator_experiments.add_job_component(backend, name, stored.arn,
                                                    raw.get("ExperimentConfig"))
            self.requests.append(copy.deepcopy(raw))
            arm = next((a for a in self._spot_arms if a.matches(name)), None)
            if arm is not None and not raw.get("EnableManagedSpotTraining"):
                logger.warning("interrupt_spot(%r) matches %s, which is not a managed spot "
                               "job: left armed for the next spot job", arm.pattern, name)
                arm = None
            if arm is not None:
                self._spot_arms.remove(arm)
            assert self.workdir is not None
            runner = JobRunner(
                self,
                name=name,
                request=copy.deepcopy(raw),
                stored=stored,
                account=response.current_account,
                region=response.region,
                workdir=self.workdir / "jobs" / name,
                spot=arm,
            )
            self.jobs[name] = runner
            runner.start()
        return result

    def _adopt(self, stored: Any, raw: dict[str, Any]) -> None:
        """Make moto's stored job show what was sent, and the state of a job just created.

        Every attribute the job thread will ever set is created here (see _emulator_job)."""
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

    # --- S3 and CloudWatch Logs, for the job threads -----------------------------------------

    def _add_account_header(self, request: Any, **_: Any) -> None:
        account = getattr(self._tls, "account", None)
        if account:
            request.headers["x-moto-account-id"] = account

    @contextlib.contextmanager
    def _as_account(self, account: str):
        previous = getattr(self._tls, "account", None)
        self._tls.account = account
        try:
            yield
        finally:
            self._tls.account = previous

    def _s3_get(self, account: str, bucket: str, key: str) -> bytes:
        with self._as_account(account):
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _s3_put(self, account: str, bucket: str, key: str, data: bytes) -> None:
        with self._as_account(account):
            self._s3.put_object(Bucket=bucket, Key=key, Body=data)

    def _s3_download_prefix(self, account: str, bucket: str, prefix: str, dest: Path) -> int:
        """Download every object under ``prefix`` into ``dest`` (see relative_key)."""
        count = 0
        dest.mkdir(parents=True, exist_ok=True)
        with self._as_account(account):
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue
                    target = dest.joinpath(*relative_key(prefix, key).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    target.write_bytes(body)
                    count += 1
        return count

    def _new_log_stream(self, account: str, job_name: str) -> str:
        """A new stream ``<job>/algo-1-<epoch seconds>`` (a later second if that one is
        taken: one stream per instance per attempt)."""
        with self._streams_lock, self._as_account(account):
            stamp = int(time.time())
            while f"{account}:{job_name}/algo-1-{stamp}" in self._streams:
                stamp += 1
            stream = f"{job_name}/algo-1-{stamp}"
            self._streams.add(f"{account}:{stream}")
            if account not in self._groups:
                with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                    self._logs.create_log_group(logGroupName=LOG_GROUP)
                self._groups.add(account)
            self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        return stream

    def _put_log_events(self, account: str, stream: str, events: list[dict[str, Any]]) -> None:
        with self._as_account(account):
            self._logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                      logEvents=events)
