"""An in-process SageMaker + S3 + CloudWatch Logs emulator that really runs training jobs.

    from sm_pytest.sagemaker.emulator import Emulator

    with Emulator(region="us-east-1") as emu:
        ...  # boto3 / sagemaker.core code that creates training jobs, in any thread
        emu.wait_idle(timeout=60)
        emu.requests          # every accepted CreateTrainingJob request, exactly as sent
        emu.refused           # (operation, message) of every request AWS would refuse

It starts moto's ``mock_aws()`` in this process and patches moto's SageMaker *response*
layer, so that CreateTrainingJob runs the job the way a SageMaker script-mode container
would (see :mod:`sm_pytest.sagemaker.emulator.jobs`): sourcedir.tar.gz and the channels come
from emulated S3, the container tree and the program's arguments and ``SM_*`` variables come
from :mod:`sm_pytest.run.contract`, the program runs as a subprocess in its own process
group, its output becomes CloudWatch log events in ``/aws/sagemaker/TrainingJobs`` (stream
``<job>/algo-<n>-<epoch seconds>``, one per instance per attempt), and model.tar.gz,
output.tar.gz and the checkpoints go back to S3. ``ResourceConfig.InstanceCount`` N runs N
hosts, ``algo-1`` .. ``algo-N``, started together, each with its own tree
(``hosts/algo-<n>`` of the attempt's folder) and stream; a failing host fails the job and
stops the others (which host is blamed: :mod:`sm_pytest.run.host_failure`); model.tar.gz is
every host's /opt/ml/model merged in host order (:mod:`sm_pytest.sagemaker.emulator.hosts`).
DescribeTrainingJob then shows what a real job shows: InProgress with SecondaryStatus
Starting -> Downloading -> Training -> Uploading, then Completed, Failed (FailureReason
``AlgorithmError: <the failure file>, exit code: 1``) or Stopped (SecondaryStatus Stopped,
MaxRuntimeExceeded or MaxWaitTimeExceeded), real FinalMetricDataList values from the
request's MetricDefinitions, timings, and the SecondaryStatusTransitions.

CreateHyperParameterTuningJob runs a search whose trials are such jobs, created through
CreateTrainingJob, at most MaxParallelTrainingJobs at a time
(:mod:`sm_pytest.sagemaker.emulator.tuning`).

How: moto's SageMaker, S3, CloudWatch Logs and metrics *response* handlers are patched
while an Emulator runs (:mod:`sm_pytest.sagemaker.emulator.patches`, which says what and
why, and refuses a moto other than the pinned one). Every request is checked against the
service's model first (:mod:`sm_pytest.sagemaker.emulator.service_rules`). The Emulator is
the patched handlers' :class:`~sm_pytest.sagemaker.emulator.patches.RequestHost` and its
job runners' :class:`~sm_pytest.sagemaker.emulator.job_host.JobHost`: those two interfaces
are all they use of it.

Retries: the emulator sets ``AWS_MAX_ATTEMPTS=1`` (``max_attempts``) and
``AWS_RETRY_MODE=standard`` for its lifetime, so that an injected ThrottlingException
reaches the caller instead of being absorbed by botocore's own retries (sagemaker-core then
also keeps its hands off: it adds its 10-attempt default only when neither is set). Pass
``max_attempts=None`` to leave botocore's retry settings alone.

Also for its lifetime: fake credentials and the region in the environment, any
AWS_PROFILE / endpoint / web-identity settings removed, an empty AWS config and credentials
file, and a SageMaker SDK config (SAGEMAKER_USER_CONFIG_OVERRIDE and
SAGEMAKER_ADMIN_CONFIG_OVERRIDE) that opts out of telemetry. Everything is restored after.

Limits: script mode only (sagemaker_program + an s3:// sagemaker_submit_directory); the
hosts of a multi-instance job meet on 127.0.0.1 and a free port (``algo-<n>`` does not
resolve here, and 7777 may be taken), and each gets every channel (FullyReplicated);
S3Prefix channels in File/FastFile mode;
CheckpointConfig.LocalPath is not relocated (the program gets SM_CHECKPOINT_DIR);
checkpoints are synced to S3 at the end of each attempt, not continuously; the image is not
used (the program runs with this interpreter, nothing is pip-installed).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# First: patches refuses a moto other than the one it was written against, before any of
# moto is imported.
from sm_pytest.sagemaker.emulator import patches

# isort: split
import boto3
from botocore.config import Config
from moto import mock_aws

from sm_pytest.sagemaker.aws import parse_s3_uri
from sm_pytest.sagemaker.cloudwatch import LOG_GROUP, read_stream
from sm_pytest.sagemaker.emulator import logs as paged_logs
from sm_pytest.sagemaker.emulator.jobs import JobRunner, SpotArm
from sm_pytest.sagemaker.emulator.staging import relative_key
from sm_pytest.sagemaker.emulator.tuning import TuningRunner

__all__ = ["Emulator", "EmulatorError"]

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


# Serialises starting and closing: one Emulator runs in a process at a time.
_STARTING = threading.Lock()


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
        #: reached the endpoint, from any client in any thread, a tuning job's trials included
        #: (calls refused by an injected error or as a duplicate name are in ``calls`` /
        #: ``injected`` only).
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
        #: Tuning job name -> its runner (``.trials``, ``.points``, ``.peak_parallel``, ...);
        #: its trials are in ``jobs`` too (emulator/tuning.py).
        self.tuning_jobs: dict[str, TuningRunner] = {}

        #: Held while a stored job is read or changed, by the patched handlers and the job
        #: runners (see jobs.py); reentrant.
        self.lock = threading.RLock()
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
        self._sagemaker: Any = None

    # --- lifetime ----------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> Emulator:
        with _STARTING:
            if patches.active() is not None:
                raise EmulatorError("another Emulator is already running in this process")
            if self._started:
                raise EmulatorError("an Emulator can be started once")
            patches.activate(self)
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
            patches.install()
            self._session = boto3.session.Session(region_name=self.region)
            internal = Config(retries={"max_attempts": 3, "mode": "standard"})
            self._s3 = self.client("s3", config=internal)
            self._logs = self.client("logs", config=internal)
            self._sagemaker = self.client("sagemaker", config=internal)
            for client in (self._s3, self._logs, self._sagemaker):
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
        # Searches first: none may start a trial once the trials are being joined.
        for runner in [*self.tuning_jobs.values(), *self.jobs.values()]:
            runner.join(max(0.0, deadline - time.monotonic()))
        self._teardown()

    def _teardown(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            patches.uninstall()
        paged_logs.restore()
        if self._mock is not None:
            with contextlib.suppress(Exception):
                self._mock.stop()
            self._mock = None
        self._restore_env()
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with _STARTING:
            patches.deactivate(self)

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
        with self.lock:
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
        with self.lock:
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
        with self.lock:
            self._no_capacity.append(job_name_or_prefix)

    def paginate_logs(self, page_size: int = 2, empty_pages: int = 3) -> Any:
        """Serve GetLogEvents as the real service may: at most ``page_size`` events a page,
        and ``empty_pages`` empty pages (with a new nextForwardToken) before each page after
        the first, until this emulator closes. Returns the paging object; its ``pages`` and
        ``empty_served`` count what it served (see :mod:`sm_pytest.sagemaker.emulator.logs`)."""
        return paged_logs.paginate(page_size, empty_pages)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every job and tuning job has ended; False when ``timeout`` seconds ran
        out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                running = [r for r in [*self.tuning_jobs.values(), *self.jobs.values()]
                           if not r.done.is_set()]
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

    # --- the RequestHost of the patched moto handlers (see patches.py) ----------------------

    def record_call(self, action: str) -> tuple[str, str] | None:
        """Record a SageMaker call; the (code, message) to fail it with, if one is due."""
        with self.lock:
            self.calls.append(action)
            queue = self._errors.get(action)
            if not queue:
                return None
            code, message = queue.popleft()
            self.injected.append((action, code))
        return code, message

    def record_refusal(self, operation: str, text: str) -> None:
        """Record a request refused for breaking the service's rules."""
        with self.lock:
            self.refused.append((operation, text))
        logger.info("refused %s: %s", operation, text)

    def start_job(self, name: str, request: dict[str, Any], stored: Any, *, account: str,
                  region: str) -> None:
        """Run the job just created from ``request`` (moto's ``stored`` job shows it), in a
        thread of its own."""
        with self.lock:
            self.requests.append(copy.deepcopy(request))
            arm = next((a for a in self._spot_arms if a.matches(name)), None)
            if arm is not None and not request.get("EnableManagedSpotTraining"):
                logger.warning("interrupt_spot(%r) matches %s, which is not a managed spot "
                               "job: left armed for the next spot job", arm.pattern, name)
                arm = None
            if arm is not None:
                self._spot_arms.remove(arm)
            assert self.workdir is not None
            runner = JobRunner(
                self,
                name=name,
                request=copy.deepcopy(request),
                stored=stored,
                account=account,
                region=region,
                workdir=self.workdir / "jobs" / name,
                spot=arm,
            )
            self.jobs[name] = runner
            runner.start()

    def sagemaker_call(self, account: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call the emulated SageMaker (``operation`` in boto3's snake_case) as ``account``:
        a tuning job creates and stops its trials so, through the handlers any client's
        calls go through. Throttling is retried (botocore standard mode, 3 attempts), as the
        service retries its own calls."""
        with self._as_account(account):
            return getattr(self._sagemaker, operation)(**params)

    # --- the JobHost of the job runners (see job_host.py) ------------------------------------

    @property
    def closing(self) -> bool:
        """The emulator is shutting down: jobs stop, and upload nothing."""
        return self._closing

    def capacity_withheld(self, job_name: str) -> bool:
        """No spot capacity ever comes for this job (:meth:`withhold_spot_capacity`)."""
        with self.lock:
            return any(SpotArm(p).matches(job_name) for p in self._no_capacity)

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

    def s3_get(self, account: str, bucket: str, key: str) -> bytes:
        """The object's bytes, read as ``account``."""
        with self._as_account(account):
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def s3_put(self, account: str, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` as the object, as ``account``."""
        with self._as_account(account):
            self._s3.put_object(Bucket=bucket, Key=key, Body=data)

    def s3_delete(self, account: str, bucket: str, key: str) -> None:
        """Delete the object, as ``account`` (a checkpoint the container deleted)."""
        with self._as_account(account):
            self._s3.delete_object(Bucket=bucket, Key=key)

    def s3_download_prefix(self, account: str, bucket: str, prefix: str, dest: Path) -> int:
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

    def new_log_stream(self, account: str, job_name: str, host: str = "algo-1") -> str:
        """A new stream ``<job>/<host>-<epoch seconds>`` (a later second if that one is
        taken: one stream per instance per attempt), as SageMaker names them
        ("algo-n-1234567890", model-parallel-best-practices.md)."""
        with self._streams_lock, self._as_account(account):
            stamp = int(time.time())
            while f"{account}:{job_name}/{host}-{stamp}" in self._streams:
                stamp += 1
            stream = f"{job_name}/{host}-{stamp}"
            self._streams.add(f"{account}:{stream}")
            if account not in self._groups:
                with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                    self._logs.create_log_group(logGroupName=LOG_GROUP)
                self._groups.add(account)
            self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        return stream

    def put_log_events(self, account: str, stream: str, events: list[dict[str, Any]]) -> None:
        """Append the events (``timestamp``, ``message``) to the job's stream."""
        with self._as_account(account):
            self._logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                      logEvents=events)
