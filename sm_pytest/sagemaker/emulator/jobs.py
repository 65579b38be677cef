"""One emulated training job, run the way a SageMaker training container runs it.

The Emulator creates one :class:`JobRunner` (a thread) per accepted CreateTrainingJob
request and hands it itself as its :class:`~sm_pytest.sagemaker.emulator.job_host.JobHost`,
the only part of the Emulator a runner uses. The thread has the source and the channels
downloaded from emulated S3 and the container tree laid out
(:mod:`sm_pytest.sagemaker.emulator.staging`), runs the program as a subprocess in its own
process group (one per instance, started together: :mod:`sm_pytest.sagemaker.emulator.hosts`;
a host failing fails the job and stops the others, the one blamed chosen by
:mod:`sm_pytest.run.host_failure`; a stop, MaxRuntime or a spot
reclaim stops them all), streams its output to emulated CloudWatch Logs, has model.tar.gz /
output.tar.gz and the checkpoints uploaded, and keeps the job stored by moto (a
``FakeTrainingJob``) up to date, so DescribeTrainingJob shows what a real job would show.

The records of its runs (:class:`~sm_pytest.sagemaker.emulator.attempts.Attempt`, the
outcomes, the armed spot interruption, the FailureReason of a failed program) are in
:mod:`sm_pytest.sagemaker.emulator.attempts`; ``Attempt`` and ``SpotArm`` are re-exported here.

What the Emulator and the patched moto handlers use of a runner: :attr:`JobRunner.status`,
:attr:`~JobRunner.log_streams`, :meth:`~JobRunner.request_stop`, :meth:`~JobRunner.arm_spot`,
:meth:`~JobRunner.describe`, and its public attributes (``done``, ``spot``, ``spot_arm``,
``attempts``, ...).

Concurrency rule for the stored job: every attribute the describe response may show is
created in the request thread, before the job thread starts (moto's ``gen_response_object``
iterates the object's ``__dict__``, and a new attribute appearing meanwhile would break that
iteration). Afterwards the job thread only *rebinds* attributes, under the Emulator's lock,
and never mutates a list or dict that a response may be reading (copy, then rebind).

Start latency and warm pools: the Emulator decides at creation how long the job waits in
SecondaryStatus Starting (``start_delay``: its cold or warm start, see
:mod:`sm_pytest.sagemaker.emulator.warm_pools`), before Downloading; a stop meanwhile ends it
Stopped without training. A keep-alive job gets its pool's persistent cache folder
(``cache_dir``), one subfolder per host (each instance of a cluster has its own), as
SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY. ``on_end(status, failure_reason, trained)`` is
called under the lock, in the same moment the job's final status is set, so that a describe
never shows a job ended while its pool is still InUse.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moto.core.utils import utcnow

from sm_pytest.run.contract import ContainerTree
from sm_pytest.run.host_failure import SETTLE_S, blame_order, failure_mtime
from sm_pytest.sagemaker.emulator.attempts import (
    EXITED,
    INTERRUPTED,
    MAX_RUNTIME,
    MAX_WAIT,
    STOPPED,
    Attempt,
    SpotArm,
    algorithm_error,
)
from sm_pytest.sagemaker.emulator.hosts import HostRun, start_hosts, stop_hosts
from sm_pytest.sagemaker.emulator.staging import JobError, JobStaging
from sm_pytest.sagemaker.emulator.warm_pools import CACHE_ENV

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.job_host import JobHost

__all__ = ["Attempt", "JobRunner", "SpotArm"]

POLL_SECONDS = 0.05
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch: message + 26 bytes per event
MAX_BATCH_EVENTS = 1000
MAX_FAILURE_REASON = 1024  # DescribeTrainingJob FailureReason is at most 1024 characters

class JobRunner(threading.Thread):
    """Runs one training job in a background thread (see the module docstring)."""

    def __init__(
        self,
        host: JobHost,
        *,
        name: str,
        request: dict[str, Any],
        stored: Any,
        account: str,
        region: str,
        workdir: Path,
        spot: SpotArm | None,
        start_delay: float = 0.0,
        cache_dir: Path | None = None,
        on_end: Callable[[str, str | None, bool], None] | None = None,
    ):
        super().__init__(name=f"sm-emulator:{name}", daemon=True)
        self.host = host
        self.job_name = name
        self.request = request
        self.stored = stored  # moto's FakeTrainingJob
        self.account = account
        self.region = region
        self.workdir = workdir
        self.spot_arm = spot
        #: Seconds in Starting before the first attempt (the cold or warm start).
        self.start_delay = start_delay
        #: The warm pool's persistent cache folder (keep-alive jobs only).
        self.cache_dir = cache_dir
        self._on_end = on_end
        self.attempts: list[Attempt] = []
        self.interrupted = 0
        self.error: str | None = None  # an emulator-side traceback, if any
        self.done = threading.Event()
        self._stop_requested = threading.Event()
        self._created = time.monotonic()
        self._training_used = 0.0
        self._log_lock = threading.Lock()
        self._metrics: dict[str, tuple[float, datetime]] = {}
        algorithm = request.get("AlgorithmSpecification") or {}
        self._metric_defs = [
            (d["Name"], re.compile(d["Regex"])) for d in algorithm.get("MetricDefinitions") or []
        ]
        self.spot = bool(request.get("EnableManagedSpotTraining"))
        stopping = request.get("StoppingCondition") or {}
        self.max_runtime = float(stopping.get("MaxRuntimeInSeconds") or 86400)
        wait = stopping.get("MaxWaitTimeInSeconds")
        self.max_wait = float(wait) if (wait and self.spot) else None
        self.staging = JobStaging(host, account, region, name, request)

    # --- what the Emulator and the patched handlers use ---------------------------------------

    @property
    def status(self) -> str:
        return self.stored.training_job_status

    @property
    def log_streams(self) -> list[str]:
        """Every stream, attempt by attempt, each attempt's in host order."""
        streams: list[str] = []
        for attempt in self.attempts:
            named = [h.log_stream for h in attempt.hosts if h.log_stream]
            streams += named or ([attempt.log_stream] if attempt.log_stream else [])
        return streams

    def request_stop(self) -> None:
        """StopTrainingJob (called under the Emulator's lock, from the request thread)."""
        self._stop_requested.set()
        self._set_status("Stopping", "Stopping", "Stopping the training job")

    def arm_spot(self, arm: SpotArm) -> None:
        self.spot_arm = arm

    # --- status bookkeeping ----------------------------------------------------------------

    def _set_status(
        self, secondary: str, primary: str | None, message: str, *, terminal: bool = False
    ) -> None:
        with self.host.lock:
            now = utcnow()
            transitions = [dict(t) for t in self.stored.secondary_status_transitions or []]
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = now
            entry = {"Status": secondary, "StartTime": now, "StatusMessage": message}
            if terminal:
                entry["EndTime"] = now
            transitions.append(entry)
            self.stored.secondary_status_transitions = transitions
            self.stored.secondary_status = secondary
            if primary is not None:
                self.stored.training_job_status = primary
            self.stored.last_modified_time = now

    def _set(self, **attributes: Any) -> None:
        with self.host.lock:
            for key, value in attributes.items():
                if key not in self.stored.__dict__:  # see the module docstring
                    raise AttributeError(f"stored job has no attribute {key!r}")
                setattr(self.stored, key, value)
            self.stored.last_modified_time = utcnow()

    # --- the thread ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # an emulator bug or an AWS error: never leave it InProgress
            self.error = traceback.format_exc()
            logging.getLogger(__name__).error("emulated job %s: %s", self.job_name, self.error)
            with contextlib.suppress(Exception):  # the mock may be gone already
                self._finish("Failed", "Failed", "Training job failed",
                             failure_reason=f"InternalServerError: emulator error: {exc}")
        finally:
            self.done.set()

    def _run(self) -> None:
        attempt: Attempt | None = None
        outcome = STOPPED
        if self.spot and self.host.capacity_withheld(self.job_name):
            self._conclude(None, self._wait_for_capacity())
            return
        if not self._wait_starting():
            self._conclude(None, STOPPED)  # stopped before the cluster was up: no training
            return
        while True:
            number = len(self.attempts) + 1
            attempt = Attempt(number, self.workdir / f"attempt-{number}")
            self.attempts.append(attempt)
            if number > 1:
                self._set_status("Starting", None, "Restarting the training job after a spot "
                                 "interruption: preparing the instances for training")
            if self._stop_requested.is_set() or self.host.closing:
                outcome = STOPPED
                break
            self._set_status("Downloading", None, "Downloading input data")
            if self.stored.training_start_time is None:
                # "the time when the training job starts on training instances. You are
                # billed for the time interval between this time and ... TrainingEndTime"
                # (DescribeTrainingJob): the instances are up, the download is billed.
                self._set(training_start_time=utcnow())
            try:
                trees = self.staging.prepare_trees(attempt.root)
                attempt.tree = trees[0][1]
                # One host's tree shares the attempt's line list (as it always was).
                attempt.hosts = [HostRun(name, tree, lines=attempt.lines if i == 0 else [])
                                 for i, (name, tree) in enumerate(trees)]
                for host in attempt.hosts:  # every instance gets the one checkpoint prefix
                    self.staging.download_checkpoints(host.tree)
            except JobError as exc:
                if exc.container:
                    self._log_lines(attempt, exc.reason.splitlines())
                self._finish("Failed", "Failed", "Training job failed",
                             failure_reason=exc.reason)
                return
            if self._stop_requested.is_set() or self.host.closing:
                outcome = STOPPED
                break
            self._set_status("Training", None,
                             "Training image download completed. Training in progress.")
            outcome = self._run_process(attempt)
            self._sync_checkpoints_up(attempt)
            if outcome != INTERRUPTED:
                break
            self.interrupted += 1
            self._set_status("Interrupted", None,
                             "The training job was interrupted: the spot instance was reclaimed")
        self._conclude(attempt, outcome)

    def _wait_for_capacity(self) -> str:
        """Capacity that never comes (Emulator.withhold_spot_capacity): wait in Starting
        until MaxWaitTimeInSeconds has passed (MAX_WAIT) or the job is stopped (STOPPED)."""
        while not (self._stop_requested.is_set() or self.host.closing):
            if self.max_wait is not None and time.monotonic() - self._created > self.max_wait:
                self._set_status("Stopping", "Stopping",
                                 "Stopping the training job: MaxWaitTimeInSeconds exceeded")
                return MAX_WAIT
            time.sleep(POLL_SECONDS)
        return STOPPED

    def _wait_starting(self) -> bool:
        """The instances start (``start_delay`` seconds in Starting); False when the job is
        stopped (or the emulator closes) meanwhile."""
        ready = time.monotonic() + self.start_delay
        while time.monotonic() < ready:
            if self._stop_requested.is_set() or self.host.closing:
                return False
            time.sleep(min(POLL_SECONDS, max(0.0, ready - time.monotonic())))
        return not (self._stop_requested.is_set() or self.host.closing)

    # --- running ---------------------------------------------------------------------------

    def _process_env(self, tree: ContainerTree) -> dict[str, str]:
        environment = {str(k): str(v) for k, v in (self.request.get("Environment") or {}).items()}
        base = dict(os.environ)
        base.update({"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region})
        base.update(environment)  # the container's own variables, under the toolkit's
        env = tree.process_env(base)
        for key, value in environment.items():
            if key not in tree.env:
                env[key] = value
        # Set by the SageMaker framework images (Dockerfile ENV) unless the job says otherwise.
        env.setdefault("PYTHONUNBUFFERED", "TRUE")
        env.setdefault("PYTHONDONTWRITEBYTECODE", "TRUE")
        if self.cache_dir is not None:
            # Each instance of the cluster keeps its own cache (its own volume).
            folder = self.cache_dir / tree.env.get("SM_CURRENT_HOST", "algo-1")
            folder.mkdir(parents=True, exist_ok=True)
            env[CACHE_ENV] = str(folder)
        return env

    def _run_process(self, attempt: Attempt) -> str:
        hosts = attempt.hosts
        several = len(hosts) > 1
        for host in hosts:
            # One stream per host, <job>/algo-<n>-<epoch seconds> (a single host: as always).
            host.log_stream = (self.host.new_log_stream(self.account, self.job_name, host.name)
                               if several else
                               self.host.new_log_stream(self.account, self.job_name))
            self._queue_line(host, "Invoking script with the following command:")
            self._queue_line(host, " ".join(host.tree.command))
        attempt.log_stream = hosts[0].log_stream
        started = time.monotonic()
        # Each host in its own process group (stop/kill reach its children), which dies with
        # pytest.
        try:
            start_hosts(hosts, self._process_env, self._queue_line,
                        thread_name=f"sm-emulator-log:{self.job_name}")
            attempt.pid = hosts[0].pid
            outcome = self._watch(attempt, started)
        finally:
            # The containers end (an exception above too): so does everything in them.
            for host in hosts:
                if host.process is not None:
                    host.process.end()
            for host in hosts:
                if host.reader is not None:
                    host.reader.join(timeout=5)
            attempt.seconds = time.monotonic() - started
            self._training_used += attempt.seconds
        if outcome == INTERRUPTED:
            self.spot_arm = None
        for host in hosts:
            host.returncode = host.process.returncode if host.process is not None else None
        failed = attempt.failed_host
        attempt.returncode = (failed or hosts[0]).returncode
        attempt.outcome = outcome
        if outcome == EXITED:
            for host in hosts:
                # A host stopped because another failed reports nothing; one that failed by
                # itself too does.
                if failed is None or host is failed or host in attempt.also_failed:
                    host.tree.record_exit(host.returncode)
                    self._queue_line(host, "Reporting training SUCCESS" if host.returncode == 0
                                     else "Reporting training FAILURE")
        self._flush_logs(attempt)
        return outcome

    def _watch(self, attempt: Attempt, started: float) -> str:
        """Poll the running hosts until they have all exited (EXITED), one has failed
        (EXITED, the others stopped), or the job must end otherwise."""
        hosts = attempt.hosts
        next_flush = started + self.host.log_flush_seconds
        arm = self.spot_arm if self.spot else None
        seen: dict[Path, tuple[int, int]] = {}
        settle_until = None
        while True:
            # Which host's failure file becomes FailureReason with several hosts is not
            # documented (research: your-algorithms-training-algo-output.md names one
            # /opt/ml/output/failure per container). The rule is the local backend's
            # (run/host_failure.py): after the first failed exit the others get SETTLE_S to
            # finish failing, then the first failure file written is blamed; the job ends
            # there, as SageMaker ends a job when one of its instances' algorithm fails.
            now = time.monotonic()
            for h in hosts:
                if h.seen_at is None and h.exited():
                    h.seen_at = now
                    # Read before record_exit (after the watch) writes one for the host.
                    h.written_at = failure_mtime(h.tree.failure_file)
            failed = [h for h in hosts if h.failed()]
            if failed:
                settle_until = now + SETTLE_S if settle_until is None else settle_until
                if all(h.exited() for h in hosts) or now >= settle_until:
                    attempt.failed_host, *attempt.also_failed = blame_order(
                        failed, written_at=lambda h: h.written_at,
                        seen_at=lambda h: math.inf if h.seen_at is None else h.seen_at)
                    stop_hosts(hosts, self.host.stop_grace_seconds)
                    return EXITED
            elif all(h.exited() for h in hosts):
                return EXITED
            outcome = None
            if self._stop_requested.is_set() or self.host.closing:
                outcome = STOPPED
            elif self._training_used + (now - started) > self.max_runtime:
                outcome = MAX_RUNTIME
            elif self.max_wait is not None and now - self._created > self.max_wait:
                outcome = MAX_WAIT
            elif arm is not None and self._spot_due(arm, hosts, started, seen):
                outcome = INTERRUPTED
            if outcome in (MAX_RUNTIME, MAX_WAIT):
                limit = "MaxRuntimeInSeconds" if outcome == MAX_RUNTIME else (
                    "MaxWaitTimeInSeconds")
                self._set_status("Stopping", "Stopping",
                                 f"Stopping the training job: {limit} exceeded")
            if outcome is not None:  # every host stops (a spot reclaim: at once)
                stop_hosts(hosts, 0.0 if outcome == INTERRUPTED else self.host.stop_grace_seconds)
                return outcome
            if now >= next_flush:
                self._flush_logs(attempt)
                next_flush = now + self.host.log_flush_seconds
            time.sleep(POLL_SECONDS)

    def _spot_due(self, arm: SpotArm, hosts: list[HostRun], started: float,
                  seen: dict[Path, tuple[int, int]]) -> bool:
        if not arm.after_checkpoint:
            return time.monotonic() - started >= arm.after_seconds
        # A checkpoint counts once it is a finished file: not hidden, not a temporary name,
        # and unchanged (size and mtime) since the previous poll.
        # Any host's checkpoint counts: with several hosts, the reclaim comes once one of them
        # has written one (all restart, and resume from the one S3 prefix).
        current = {}
        for path in (p for h in hosts for p in h.tree.checkpoint_dir.rglob("*")):
            if path.name.startswith(".") or ".tmp" in path.name:
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                current[path] = (st.st_size, st.st_mtime_ns)
        due = any(seen.get(p) == sig for p, sig in current.items())
        seen.clear()
        seen.update(current)
        return due

    # --- logs and metrics ------------------------------------------------------------------

    def _queue_line(self, host: HostRun, line: str) -> None:
        stamp = time.time()
        with host.lock:
            host.lines.append(line)
            if line:  # CloudWatch refuses empty messages
                host.pending.append((int(stamp * 1000), line))
        # Every host's lines: SageMaker applies the metric definitions to every instance's
        # log ("each machine emits an objective metric", automatic-model-tuning-
        # considerations.md); the last value seen wins.
        for metric, regex in self._metric_defs:
            match = regex.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if regex.groups else match.group(0))
            except (ValueError, IndexError):
                continue
            if math.isfinite(value):
                when = datetime.fromtimestamp(stamp, timezone.utc).replace(tzinfo=None)
                with self._log_lock:
                    self._metrics[metric] = (value, when)

    def _log_lines(self, attempt: Attempt, lines: list[str]) -> None:
        """Lines of an attempt that failed before its program started: algo-1's stream."""
        if attempt.log_stream is None:
            attempt.log_stream = self.host.new_log_stream(self.account, self.job_name)
        host = HostRun("algo-1", None, log_stream=attempt.log_stream, lines=attempt.lines)
        for line in lines:
            self._queue_line(host, line)
        self._flush_host(host)

    def _flush_logs(self, attempt: Attempt) -> None:
        for host in attempt.hosts:
            self._flush_host(host)

    def _flush_host(self, host: HostRun) -> None:
        batch = host.take_pending()
        if not batch or host.log_stream is None:
            return
        events = []
        for stamp, line in batch:
            data = line.encode("utf-8")
            if len(data) > MAX_EVENT_BYTES:
                line = data[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
            events.append({"timestamp": stamp, "message": line})
        for start in range(0, len(events), MAX_BATCH_EVENTS):
            self.host.put_log_events(self.account, host.log_stream,
                                     events[start : start + MAX_BATCH_EVENTS])

    # --- uploading and the end -------------------------------------------------------------

    def _sync_checkpoints_up(self, attempt: Attempt) -> None:
        if attempt.tree is None or self.host.closing:
            return
        # Every host syncs its checkpoint dir to the one S3 prefix, in host order ("The
        # high-level SageMaker checkpoint configuration specifies a single Amazon S3
        # location", model-checkpoints.md): a later host's same-named file wins.
        for host in attempt.hosts:
            self.staging.sync_checkpoints_up(host.tree)

    def _upload_outputs(self, attempt: Attempt | None, status: str) -> None:
        if attempt is None or attempt.tree is None or self.host.closing:
            return
        packed = attempt.root / "upload"
        trees = [host.tree for host in attempt.hosts] or [attempt.tree]
        model = self.staging.upload_model(trees, packed, status)
        if model is not None:
            self._set(model_artifacts={"S3ModelArtifacts": model})
        self.staging.upload_output_data(trees, packed)

    def _conclude(self, attempt: Attempt | None, outcome: str) -> None:
        if outcome == EXITED and attempt is not None and attempt.returncode == 0:
            final = ("Completed", "Completed", "Training job completed", None)
        elif outcome == EXITED:
            final = ("Failed", "Failed", "Training job failed", algorithm_error(attempt))
        elif outcome == MAX_RUNTIME:
            final = ("Stopped", "MaxRuntimeExceeded",
                     f"Training job stopped: it exceeded MaxRuntimeInSeconds "
                     f"({self.max_runtime:g} s)", None)
        elif outcome == MAX_WAIT:
            final = ("Stopped", "MaxWaitTimeExceeded",
                     f"Training job stopped: it exceeded MaxWaitTimeInSeconds "
                     f"({self.max_wait:g} s)", None)
        else:
            final = ("Stopped", "Stopped", "Training job stopped", None)
        primary, secondary, message, reason = final
        ran = attempt is not None and attempt.tree is not None and attempt.pid is not None
        if ran and not self.host.closing:
            self._set_status("Uploading", None, "Uploading generated training model")
            self._upload_outputs(attempt, primary)
        self._finish(primary, secondary, message, failure_reason=reason)

    def _finish(self, primary: str, secondary: str, message: str, *,
                failure_reason: str | None = None) -> None:
        end = utcnow()
        start = self.stored.training_start_time
        if start is not None:
            training = max(1, math.ceil((end - start).total_seconds()))
            billable = training
            if self.spot:
                billable = max(1, math.floor(training * (1 - self.host.spot_saving)))
        else:
            training = billable = 0
        names = [name for name, _ in self._metric_defs]
        metrics = [
            {"MetricName": name, "Value": self._metrics[name][0],
             "Timestamp": self._metrics[name][1]}
            for name in dict.fromkeys(names) if name in self._metrics
        ]
        if failure_reason is not None and len(failure_reason) > MAX_FAILURE_REASON:
            failure_reason = failure_reason[: MAX_FAILURE_REASON - 3] + "..."
        with self.host.lock:
            self._set(
                training_end_time=end,
                training_time_in_seconds=training,
                billable_time_in_seconds=billable,
                final_metric_data_list=metrics,
                failure_reason=failure_reason,
            )
            self._set_status(secondary, primary, message, terminal=True)
            if self._on_end is not None:
                self._on_end(primary, failure_reason, start is not None)

    # --- for tests -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """A summary for tests and debugging (not an AWS shape)."""
        return {
            "name": self.job_name,
            "status": self.status,
            "interrupted": self.interrupted,
            "attempts": [
                {"number": a.number, "root": str(a.root), "pid": a.pid, "returncode": a.returncode,
                 "outcome": a.outcome, "log_stream": a.log_stream, "seconds": a.seconds,
                 "hosts": [{"name": h.name, "pid": h.pid, "returncode": h.returncode,
                            "log_stream": h.log_stream} for h in a.hosts],
                 "failed_host": a.failed_host.name if a.failed_host else None}
                for a in self.attempts
            ],
            "error": self.error,
        }
