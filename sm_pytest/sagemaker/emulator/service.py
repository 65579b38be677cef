"""An in-process SageMaker + S3 + CloudWatch Logs emulator that really runs training jobs.

    from sm_pytest.sagemaker.emulator import Emulator

    with Emulator(region="us-east-1") as emu:
        ...  # boto3 / sagemaker.core code that creates training jobs, in any thread
        emu.wait_idle(timeout=60)
        emu.requests          # every accepted CreateTrainingJob request, exactly as sent
        emu.refused           # (operation, message) of every request AWS would refuse

The Emulator: its lifetime (moto's ``mock_aws()`` started, the handlers patched, the
environment set: :mod:`sm_pytest.sagemaker.emulator.environment`; all undone on close), the
knobs a test turns (``throttle``, ``interrupt_spot``, ``withhold_spot_capacity``,
``start_latency``, ``quota``, ``deny_service_quotas``, ``paginate_logs``) and what it records
(``requests``, ``calls``, ``injected``, ``refused``, ``jobs``, ``tuning_jobs``). What it
emulates, and which module does what: the package's docstring
(:mod:`sm_pytest.sagemaker.emulator`).

How: moto's SageMaker, S3, CloudWatch Logs and metrics *response* handlers are patched
while an Emulator runs (:mod:`sm_pytest.sagemaker.emulator.patches`, which says what and
why, and refuses a moto other than the pinned one). Every request is checked against the
service's model first (:mod:`sm_pytest.sagemaker.emulator.service_rules`). The Emulator is
the patched handlers' :class:`~sm_pytest.sagemaker.emulator.patches.RequestHost` and its
job runners' :class:`~sm_pytest.sagemaker.emulator.job_host.JobHost`: those two interfaces
are all they use of it.
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
from moto import mock_aws

from sm_pytest.sagemaker.aws import parse_s3_uri
from sm_pytest.sagemaker.cloudwatch import read_stream
from sm_pytest.sagemaker.emulator import logs as paged_logs
from sm_pytest.sagemaker.emulator.attempts import SpotArm
from sm_pytest.sagemaker.emulator.aws_clients import AccountClients
from sm_pytest.sagemaker.emulator.environment import restore_env, set_env
from sm_pytest.sagemaker.emulator.jobs import JobRunner
from sm_pytest.sagemaker.emulator.tuning import TuningRunner
from sm_pytest.sagemaker.emulator.warm_pools import (
    WarmPool,
    WarmPoolRegistry,
    keeps_pool,
)

__all__ = ["Emulator", "EmulatorError"]

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"
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
        cold_start_seconds: seconds a job waits in Starting on a fresh cluster.
        warm_start_seconds: seconds a job waits in Starting on a warm pool.
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
        cold_start_seconds: float = 0.0,
        warm_start_seconds: float = 0.0,
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
        self._cold_start = self._warm_start = 0.0
        self.start_latency(cold_start_seconds, warm_start_seconds)
        self._client_lock = threading.Lock()
        self._errors: dict[str, collections.deque[tuple[str, str]]] = {}
        self._spot_arms: list[SpotArm] = []
        self._no_capacity: list[str] = []  # withhold_spot_capacity
        self._pools = WarmPoolRegistry()  # its cache_root is set once the workdir exists
        self._quotas_denied: str | None = None  # deny_service_quotas
        self._closing = False
        self._started = False
        self._env_saved: dict[str, str | None] = {}
        self._mock: Any = None
        self._session: Any = None
        self._aws: Any = None  # its own clients (AccountClients), once started

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
            self._pools.cache_root = self.workdir / "warm-pools"
            set_env(self._env_saved, self.workdir, self.region, self.max_attempts)
            self._mock = mock_aws()
            self._mock.start()
            patches.install()
            self._session = boto3.session.Session(region_name=self.region)
            self._aws = AccountClients(self.client)
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
        restore_env(self._env_saved)
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with _STARTING:
            patches.deactivate(self)

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

    def start_latency(self, cold: float, warm: float) -> None:
        """Jobs created from now on wait ``cold`` seconds in Starting on a fresh cluster,
        ``warm`` seconds on a warm pool (both 0 by default)."""
        for name, value in (("cold", cold), ("warm", warm)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                    0 <= value < float("inf")):
                raise ValueError(f"start_latency: {name} must be a number of seconds, 0 or "
                                 f"more, not {value!r}")
        with self.lock:
            self._cold_start, self._warm_start = float(cold), float(warm)

    def quota(self, instance_type: str, warm_pool_instances: int) -> None:
        """Set the account's warm-pool quota ("<instance type> for training warm pool
        usage", in instances; default 0, as on AWS): what Service Quotas shows, and how many
        instances of that type may idle in Available pools at once."""
        with self.lock:
            self._pools.set_quota(instance_type, warm_pool_instances)

    def deny_service_quotas(self, code: str = "AccessDeniedException") -> None:
        """From now on every Service Quotas call fails with the AWS error ``code``, worded as
        AWS words a missing servicequotas:* permission."""
        with self.lock:
            self._quotas_denied = code

    @property
    def warm_pools(self) -> list[WarmPool]:
        """Every keep-alive job's warm pool as it stands now, in creation order: job_name,
        status (its WarmPoolStatus.Status), instance_type, instance_count, reused_by,
        billable_seconds and cache_dir."""
        with self.lock:
            self.sync_warm_pools()
            return self._pools.pools()

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
        with self._aws.as_account(runner.account):
            return {stream: read_stream(self._aws.logs, stream)[0]
                    for stream in runner.log_streams}

    def upload_source(self, source_dir: str | os.PathLike[str], s3_uri: str) -> str:
        """Pack ``source_dir`` as sourcedir.tar.gz at ``s3_uri`` (the bucket must exist), the
        way ``--sm`` packs it (sm_pytest.sagemaker.uploads); returns ``s3_uri``."""
        from sm_pytest.sagemaker.uploads import pack_source_dir

        bucket, key = parse_s3_uri(s3_uri)
        archive, _ = pack_source_dir(Path(source_dir))
        self._aws.s3.put_object(Bucket=bucket, Key=key, Body=archive)
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
            placement = self._pools.register(name, request, scope=(account, region))
            if placement is not None:  # before the thread starts (see jobs.py)
                stored.warm_pool_status = self._pools.status(name)
                self.sync_warm_pools()  # the pool it took is Reused now
            warm = placement is not None and placement.warm
            runner = JobRunner(
                self,
                name=name,
                request=copy.deepcopy(request),
                stored=stored,
                account=account,
                region=region,
                workdir=self.workdir / "jobs" / name,
                spot=arm,
                start_delay=self._warm_start if warm else self._cold_start,
                cache_dir=placement.cache_dir if placement is not None else None,
                on_end=(None if placement is None else
                        lambda status, reason, trained, name=name:
                        self._job_ended(name, status, reason, trained)),
            )
            self.jobs[name] = runner
            runner.start()

    def _job_ended(self, name: str, status: str, failure_reason: str | None,
                   trained: bool) -> None:
        """A keep-alive job ended (called under the lock, as its status is set)."""
        with self.lock:
            self._pools.job_ended(name, keeps_pool(status, failure_reason, trained))
            self.sync_warm_pools()

    def sync_warm_pools(self) -> None:
        """Rebind each keep-alive job's stored WarmPoolStatus that changed (pools end when
        their time is up, and the billable time grows while they are Available)."""
        with self.lock:
            for name in self._pools.job_names():
                runner = self.jobs.get(name)
                shown = self._pools.status(name)
                if runner is not None and runner.stored.warm_pool_status != shown:
                    runner.stored.warm_pool_status = shown

    def update_warm_pool(self, name: str, keep_alive: int) -> None:
        """UpdateTrainingJob's ResourceConfig.KeepAlivePeriodInSeconds (WarmPoolError, a
        ValueError, when the job has no pool to change)."""
        with self.lock:
            self._pools.update(name, keep_alive)
            self.sync_warm_pools()

    def service_quotas_denial(self, operation: str) -> tuple[str, str] | None:
        """The (code, message) every Service Quotas call fails with after
        :meth:`deny_service_quotas`."""
        from sm_pytest.sagemaker.emulator.service_quotas import denial_message

        with self.lock:
            code = self._quotas_denied
        return None if code is None else (code, denial_message(operation, self.account_id))

    def warm_pool_quotas(self) -> dict[str, float]:
        """The warm-pool quotas set with :meth:`quota`, by instance type."""
        with self.lock:
            return {t: float(n) for t, n in self._pools.quotas.items()}

    def sagemaker_call(self, account: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call the emulated SageMaker (``operation`` in boto3's snake_case) as ``account``:
        a tuning job creates and stops its trials so, through the handlers any client's
        calls go through. Throttling is retried (botocore standard mode, 3 attempts), as the
        service retries its own calls."""
        with self._aws.as_account(account):
            return getattr(self._aws.sagemaker, operation)(**params)

    # --- the JobHost of the job runners (see job_host.py) ------------------------------------

    @property
    def closing(self) -> bool:
        """The emulator is shutting down: jobs stop, and upload nothing."""
        return self._closing

    def capacity_withheld(self, job_name: str) -> bool:
        """No spot capacity ever comes for this job (:meth:`withhold_spot_capacity`)."""
        with self.lock:
            return any(SpotArm(p).matches(job_name) for p in self._no_capacity)

    def s3_get(self, account: str, bucket: str, key: str) -> bytes:
        """The object's bytes, read as ``account``."""
        return self._aws.s3_get(account, bucket, key)

    def s3_put(self, account: str, bucket: str, key: str, data: bytes) -> None:
        """Store ``data`` as the object, as ``account``."""
        self._aws.s3_put(account, bucket, key, data)

    def s3_delete(self, account: str, bucket: str, key: str) -> None:
        """Delete the object, as ``account`` (a checkpoint the container deleted)."""
        self._aws.s3_delete(account, bucket, key)

    def s3_download_prefix(self, account: str, bucket: str, prefix: str, dest: Path) -> int:
        """Download every object under ``prefix`` into ``dest`` (see staging.relative_key)."""
        return self._aws.s3_download_prefix(account, bucket, prefix, dest)

    def new_log_stream(self, account: str, job_name: str, host: str = "algo-1") -> str:
        """A new stream ``<job>/<host>-<epoch seconds>``, one per instance per attempt."""
        return self._aws.new_log_stream(account, job_name, host)

    def put_log_events(self, account: str, stream: str, events: list[dict[str, Any]]) -> None:
        """Append the events (``timestamp``, ``message``) to the job's stream."""
        self._aws.put_log_events(account, stream, events)
