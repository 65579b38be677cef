"""Run each RunSpec as a SageMaker Training Job through the v3 SDK (sagemaker-core).

Jobs are launched as soon as they are submitted, up to `max_parallel` at a time; the rest
wait in a queue. One poller thread describes every job in flight at a sane interval, prints
one line per status change, and launches queued jobs as slots free up. After a job ends
(Completed, Failed or Stopped) its CloudWatch logs, model.tar.gz and output.tar.gz are fetched
into the run's attempt folder, so a failed job leaves the same evidence as a passing one.

Everything AWS is imported here, lazily: this module is only imported with --sm.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sm_pytest.backends.base import JobTracker
from sm_pytest.backends.sagemaker_pools import PoolKeeper
from sm_pytest.model import COMPLETED, FAILED, STOPPED, TIMED_OUT, RunResult
from sm_pytest.run import signals
from sm_pytest.run.artifacts import write_json_atomic
from sm_pytest.run.progress import for_run
from sm_pytest.run.safe_tar import UnsafeArchiveError, safe_extract
from sm_pytest.sagemaker import cloudwatch, outcomes, uploads
from sm_pytest.sagemaker import request as requests
from sm_pytest.sagemaker.aws import error_code, parse_s3_uri
from sm_pytest.sagemaker.settings import SageMakerSettings
from sm_pytest.sagemaker.warm_pools import PoolState, fate, keeps_pool
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.metrics import extract, final_values

POLL_INTERVAL_S = 15.0
_RETRYABLE = {"ThrottlingException", "ResourceLimitExceeded", "Throttling",
              "TooManyRequestsException"}
_TERMINAL = {"Completed": COMPLETED, "Failed": FAILED, "Stopped": STOPPED}
# S3's answers for an object that does not exist (HeadObject gives the bare status), and
# for one these credentials may not read.
_NOT_THERE = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "Forbidden"}
# CloudWatch Logs' answers that no retry will change (live progress gives up on them).
_DENIED_LOGS = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}
LIVE_PAGES_PER_POLL = 2  # GetLogEvents pages per stream and poll, for live progress only
LIVE_GIVE_UP_AFTER = 5  # consecutive failed reads (throttling aside) that end live progress


@dataclass
class JobHandle:
    run: RunSpec
    attempt_dir: Path
    settings: SageMakerSettings
    job_name: str
    request: dict | None = None
    claimed: bool = False  # taken off the queue: being launched, or launched
    collecting: bool = False  # ended; its logs and archives are being fetched
    result: RunResult | None = None
    launched: bool = False
    stop_requested: bool = False
    status: str = "Queued"
    secondary: str = ""
    describe: dict = field(default_factory=dict)
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.time)
    # (cloudwatch.LogTail, progress.Progress, failed reads in a row) while it runs; () once
    # its log proved unreadable
    live: tuple | None = None
    pool_from: str = ""  # the job of this session whose warm pool it started on


def backoff_delays(attempts: int = 8, base: float = 1.0, cap: float = 60.0):
    """Exponential backoff with full jitter (the AWS architecture blog's recommendation)."""
    for attempt in range(attempts):
        yield random.uniform(0, min(cap, base * 2**attempt))


@dataclass
class _Once:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: str | None = None


class SageMakerBackend:
    name = "sagemaker"

    def __init__(self, *, settings_for: Callable[[RunSpec], SageMakerSettings],
                 region: str | None, max_parallel: int, token: str,
                 progress: Callable[[str], None], poll_interval: float = POLL_INTERVAL_S,
                 experiments: JobTracker | None = None, sleep: Callable[[float], None] = time.sleep,
                 tick: Callable[[], None] = lambda: None, boto_session=None,
                 keep_pools: bool = False):
        import boto3

        self.settings_for = settings_for
        # boto_session: shared with SageMaker Experiments, which is made before the backend.
        self.session = boto_session or boto3.Session(region_name=region)
        self.region = self.session.region_name
        self.sm = self.session.client("sagemaker")
        self.s3 = self.session.client("s3")
        self.logs = self.session.client("logs")
        self.max_parallel = max(1, max_parallel)
        self.token = token
        self.progress = progress
        self.poll_interval = poll_interval
        self.experiments = experiments
        self.sleep = sleep
        self.tick = tick  # called on the waiting (main) thread, e.g. to print progress
        self.handles: list[JobHandle] = []
        self.live_progress = True  # metric lines from the log of each running job
        self.stopped: list[str] = []  # names of running jobs this session asked to stop
        # Tuning jobs (sagemaker_tuning.TuningSearch), stopped and fetched with the jobs.
        self.searches: list = []
        self._queue: list[JobHandle] = []
        self._lock = threading.Lock()
        self.pools = PoolKeeper(self.sm, progress, keep=keep_pools, region=self.region,
                                poll_interval=poll_interval)
        self._wake = threading.Event()
        self._closed = False
        self._poller = threading.Thread(target=self._poll_loop, name="sm-pytest-poller",
                                        daemon=True)
        self._poller.start()
        # Launching means uploads, an Experiments run and CreateTrainingJob: seconds each over
        # the network, so jobs are launched side by side, not one after another.
        self._launcher = ThreadPoolExecutor(max_workers=min(8, self.max_parallel),
                                            thread_name_prefix="sm-pytest-launch")
        self._once_lock = threading.Lock()
        self._done_once: dict[tuple, _Once] = {}

    # -- the Backend interface ------------------------------------------------------------

    def submit(self, run: RunSpec, attempt_dir: Path) -> JobHandle:
        handle = JobHandle(run, attempt_dir, self.settings_for(run),
                           requests.job_name(run, f"{self.token}{len(self.handles):03d}"))
        with self._lock:
            self.handles.append(handle)
            self._queue.append(handle)
        self._wake.set()
        return handle

    def no_more_jobs(self) -> None:
        """The session will submit no further job: a warm pool that no queued job can use
        may be released as soon as its job ends (sagemaker_pools.PoolKeeper)."""
        self.pools.all_submitted = True
        self._wake.set()

    def pool_jobs(self) -> list[tuple[str, int]]:
        """(name, keep-alive seconds) of every launched job that asked for a warm pool (a
        tuning job's trials keep none: sagemaker/tuning.py)."""
        return [(h.job_name, h.settings.keep_alive_s) for h in self.handles
                if h.launched and keeps_pool(h.request or {})]

    def wait(self, handle: JobHandle) -> RunResult:
        try:
            with signals.interruptible():  # a signal stops the jobs (see below)
                while not handle.done.wait(timeout=0.5):
                    self.tick()
            self.tick()
        except BaseException:
            self.stop_all()
            raise
        # Fetched in the background as soon as the job ended; a job that never launched
        # has nothing to fetch.
        return handle.result if handle.result is not None else self.collect(handle)

    def stop(self, handle: JobHandle) -> None:
        if not isinstance(handle, JobHandle):  # a search: it stops its tuning job itself
            handle.stop()
            return
        with self._lock:
            if handle.stop_requested or handle.done.is_set() or handle.collecting:
                return
            handle.stop_requested = True
            launched, claimed = handle.launched, handle.claimed
        if launched:
            self.stopped.append(handle.job_name)
            try:
                self.sm.stop_training_job(TrainingJobName=handle.job_name)
            except Exception as exc:  # the job may have ended meanwhile
                self.progress(f"could not stop {handle.job_name}: {exc}\n")
        elif not claimed:
            handle.status, handle.error = "Stopped", "stopped before it was launched"
            handle.done.set()
        # claimed but not launched yet: the launcher sees stop_requested and stops it

    def stop_all(self) -> None:
        """Stop every job and tuning job this session launched that is still running
        (see `stopped`)."""
        with self._lock:
            self._queue.clear()
            pending = [h for h in self.handles if not h.done.is_set()]
        for handle in pending:
            self.stop(handle)
        for search in list(self.searches):
            search.stop()

    def close(self) -> None:
        """Stop the poller, and let launches and fetches in flight finish (a launch stops
        its job if asked to): afterwards no other thread touches a handle."""
        self._closed = True
        self._wake.set()
        self._poller.join(timeout=60)
        self._launcher.shutdown(wait=True, cancel_futures=True)

    def leftovers(self) -> list[RunResult]:
        """What launched jobs that nobody waited for left behind (a session ended by -x,
        Ctrl-C or a timeout): the result of each one that ended, and for each one still
        running (stop_all first) its log so far, as Stopped. Call after close(); for the
        caller to save, so that no job's log is lost."""
        results = []
        for handle in self.handles:
            # Saved already (by the runner, after its wait) or never launched: nothing left.
            if not handle.launched or (handle.attempt_dir / "result.json").exists():
                continue
            try:
                if handle.result is None:  # still running, or its fetch was cancelled
                    handle.result = self._collect_unfinished(handle)
            except Exception as exc:
                self.progress(f"{handle.job_name}: could not fetch what it left: {exc}\n")
                continue
            results.append(handle.result)
        for search in self.searches:
            try:
                results += search.leftovers()
            except Exception as exc:
                self.progress(f"{search.name}: could not fetch what its trials left: {exc}\n")
        return results

    def _collect_unfinished(self, handle: JobHandle) -> RunResult:
        try:
            handle.describe = self.sm.describe_training_job(TrainingJobName=handle.job_name)
            handle.status = handle.describe["TrainingJobStatus"]
        except Exception as exc:
            handle.error = f"could not describe the job: {exc}"
        if handle.status not in _TERMINAL:
            handle.status = "Stopped"
            handle.error = ("this session ended before the job did, and stopped it; train.log"
                            " holds its log up to then")
        return self.collect(handle)

    # -- launching --------------------------------------------------------------------------

    def _launch(self, handle: JobHandle) -> None:
        try:
            self._launch_unguarded(handle)
        except Exception as exc:  # never leave a waiter hanging on a dead launch
            if not handle.done.is_set() and not handle.launched:
                self._fail_before_launch(handle, f"could not launch the job: {exc}")

    def _launch_unguarded(self, handle: JobHandle) -> None:
        settings, run = handle.settings, handle.run
        try:
            source_uri = self._source_uri(run, settings)
            inputs = self._inputs(run, settings)
            image = self._image(settings)

            def build(experiment_config: dict | None) -> tuple[dict, list[str]]:
                return requests.build_request(
                    run, settings, job_name=handle.job_name, image_uri=image,
                    source_uri=source_uri, inputs=inputs, experiment_config=experiment_config)

            # Checked in full before the Run exists: a Run whose job is never created would
            # stay InProgress, counted against its run group's 50, for ever.
            request, warnings = build(None)
            if self.experiments is not None:
                config = self.experiments.start_run(run, handle.job_name)
                handle.request = request  # from here on, collect finishes the Run
                request, warnings = build(config)
        except Exception as exc:
            self._fail_before_launch(handle, f"could not prepare the job: {exc}")
            return
        for warning in warnings:
            self.progress(f"warning: {run.name}: {warning}\n")
        handle.request = request
        write_json_atomic(handle.attempt_dir / "request.json", request)
        for delay in [*backoff_delays(), None]:
            if handle.stop_requested:
                self._fail_before_launch(handle, "stopped before it was launched", "Stopped")
                return
            try:
                self._create(request)
                break
            except Exception as exc:
                code = error_code(exc)
                quota = outcomes.zero_quota(str(exc)) if code == "ResourceLimitExceeded" else None
                if quota:  # waiting frees no instance of a quota that is 0
                    self._fail_before_launch(handle, outcomes.zero_quota_reason(
                        quota, spot=settings.spot,
                        spot_from=settings.sources.get("spot", "--spot")))
                    return
                if code in _RETRYABLE and delay is not None:
                    self.progress(f"{handle.job_name}: {code}, retrying in {delay:.1f} s\n")
                    self.sleep(delay)
                    continue
                self._fail_before_launch(handle, f"CreateTrainingJob failed: {exc}")
                return
        with self._lock:
            handle.launched, handle.status = True, "InProgress"
            stop_now = handle.stop_requested
        self.progress(f"{handle.job_name}: launched ({run.name}, {settings.instance_type}"
                      f"{', spot' if settings.spot else ''})\n")
        if stop_now:  # a stop arrived while CreateTrainingJob was in flight
            handle.stop_requested = False
            self.stop(handle)
        self._wake.set()

    def launch_soon(self, launch: Callable[[], None]) -> None:
        """`launch` on a launching thread, as jobs are launched (a tuning job's): close()
        lets it finish."""
        self._launcher.submit(launch)

    def training_request(self, run: RunSpec, settings: SageMakerSettings,
                         job_name: str) -> tuple[dict, list[str]]:
        """The CreateTrainingJob request of `run` without Experiments, its code and data
        uploaded (once a session): a tuning job's training job definition."""
        return requests.build_request(
            run, settings, job_name=job_name, image_uri=self._image(settings),
            source_uri=self._source_uri(run, settings), inputs=self._inputs(run, settings))

    def _create(self, request: dict) -> None:
        from sagemaker.core.resources import TrainingJob

        # Safe from several threads: sagemaker-core builds one client per (session, region)
        # under its own lock and caches it; boto3 clients are thread-safe.
        TrainingJob.create(**requests.to_sdk_kwargs(request), session=self.session,
                           region=self.region)

    def _once(self, key: tuple, compute: Callable[[], str]) -> str:
        """compute() for the first launch that needs `key`; launches needing the same key
        wait and reuse it, others go on. Eight threads uploading one dataset at once raced
        on the same keys (and, on moto, read a body another upload had just closed)."""
        with self._once_lock:
            entry = self._done_once.setdefault(key, _Once())
        with entry.lock:
            if entry.value is None:  # not yet, or the last try failed
                entry.value = compute()
            return entry.value

    def _source_uri(self, run: RunSpec, settings: SageMakerSettings) -> str:
        return self._once(("source", str(run.source_dir), settings.bucket, settings.prefix),
                          lambda: uploads.upload_source(self.s3, run.source_dir,
                                                        settings.bucket, settings.prefix))

    def _inputs(self, run: RunSpec, settings: SageMakerSettings) -> dict[str, str]:
        return {channel: self._once(
                    ("input", str(location), settings.bucket, settings.prefix),
                    lambda location=location: uploads.resolve_input(
                        self.s3, location, settings.bucket, settings.prefix))
                for channel, location in sorted(run.inputs.items())}

    def _image(self, settings: SageMakerSettings) -> str:
        # The lookup loads botocore's endpoint data: once, not once per launching thread.
        return self._once(("image", settings.framework_version, settings.py_version,
                           settings.instance_type, self.region),
                          lambda: requests.image_uri(settings, region=self.region))

    def _fail_before_launch(self, handle: JobHandle, reason: str,
                            status: str = "Failed") -> None:
        self.pools.forget(handle)
        handle.status, handle.error = status, reason
        self.progress(f"{handle.run.name}: {reason}\n")
        handle.done.set()

    # -- polling ------------------------------------------------------------------------------

    def _in_flight(self) -> list[JobHandle]:
        return [h for h in self.handles
                if h.claimed and not h.done.is_set() and not h.collecting]

    def _poll_loop(self) -> None:
        while not self._closed:
            try:
                self._poll_once()
            except Exception as exc:  # keep polling: a dead poller would hang every wait
                self.progress(f"sm-pytest poller: {exc}\n")
                time.sleep(self.poll_interval)

    def _poll_once(self) -> None:
        with self._lock:
            free = self.max_parallel - len(self._in_flight())
            # A job whose warm pool just came free hands it to a queued job that matches.
            starting = self.pools.choose(self._queue, max(0, free))
            for handle in starting:
                handle.claimed = True
        for handle in starting:
            self._launcher.submit(self._launch, handle)
        for handle in self._in_flight():
            if handle.launched:
                self._poll(handle)
        with self._lock:
            queued = list(self._queue)
        self.pools.release_unneeded(queued)
        with self._lock:
            busy = bool(self._queue) or bool(self._in_flight())
        self._wake.wait(timeout=self.poll_interval if busy else 5.0)
        self._wake.clear()

    def _poll(self, handle: JobHandle) -> None:
        try:
            describe = self.sm.describe_training_job(TrainingJobName=handle.job_name)
        except Exception as exc:
            code = error_code(exc)
            if code not in _RETRYABLE:
                self.progress(f"{handle.job_name}: describe failed: {exc}\n")
            return
        status, secondary = describe["TrainingJobStatus"], describe.get("SecondaryStatus", "")
        if (status, secondary) != (handle.status, handle.secondary):
            handle.status, handle.secondary = status, secondary
            detail = f" / {secondary}" if secondary and secondary != status else ""
            self.progress(f"{handle.job_name}: {status}{detail}\n")
        if status == "InProgress" or status in _TERMINAL:
            self.follow_log(handle, ended=status in _TERMINAL)
        if describe.get("TrainingStartTime") or status in _TERMINAL:
            self.pools.confirm(handle)  # on its instances: a pool it took has moved to it
        if status in _TERMINAL:
            handle.describe = describe
            self.pools.ended(handle)
            handle.collecting = True
            # Fetch logs and archives while other jobs still run, not one by one at the end.
            self._launcher.submit(self._finalize, handle)

    def follow_log(self, handle: JobHandle, ended: bool) -> None:
        """Live progress: the job's new log lines through its metric definitions, one line
        when they match a new value set (rate-limited; the last one shows when it ends).
        Called at each poll of a running job (a tuning job's trials too: sagemaker_tuning)."""
        if not self.live_progress or handle.live == ():
            return
        if handle.live is None:
            # A few pages a poll: a chatty job must not hold up the polling of the others;
            # the rest of its log comes at the next poll.
            handle.live = (cloudwatch.LogTail(self.logs, handle.job_name,
                                              max_pages_per_stream=LIVE_PAGES_PER_POLL),
                           for_run(handle.run), 0)
        tail, progress, failures = handle.live
        try:
            lines = tail.poll()
        except Exception as exc:
            # Throttling and the like pass (the next poll resumes where this one failed);
            # access denied, or errors that persist, end live progress: said once, and the
            # whole log is fetched after the job anyway.
            code = error_code(exc)
            failures = failures if code in _RETRYABLE else failures + 1
            if code in _DENIED_LOGS or failures >= LIVE_GIVE_UP_AFTER:
                handle.live = ()
                self.progress(f"{handle.job_name}: no live progress, its log cannot be"
                              f" read: {exc}\n")
            else:
                handle.live = (tail, progress, failures)
            return
        handle.live = (tail, progress, 0)
        for line in lines:
            progress.feed(line)
        line = progress.last() if ended else progress.due()
        if line is not None:
            self.progress(line + "\n")

    def _finalize(self, handle: JobHandle) -> None:
        try:
            handle.result = self.collect(handle)
        except Exception as exc:  # the waiter collects again and reports what went wrong
            self.progress(f"{handle.job_name}: fetching its results failed: {exc}\n")
        finally:
            handle.done.set()

    # -- after the job ------------------------------------------------------------------------

    def collect(self, handle: JobHandle) -> RunResult:
        """What the ended job left, fetched into its attempt folder: its log, model and
        output, as a RunResult (also for a tuning job's trials, sagemaker_tuning.py)."""
        attempt = handle.attempt_dir
        log_path = attempt / "train.log"
        describe = handle.describe
        if describe:
            write_json_atomic(attempt / "describe.json", describe)
            program_lines = self._download_logs(handle.job_name, log_path)
            problems = self._download_outputs(handle, describe)
            if problems:
                # The job's own outcome stays in describe.json and train.log; the run fails,
                # because what it left cannot be trusted or was not all fetched.
                reason = "; ".join(filter(None, [describe.get("FailureReason"), *problems]))
                handle.status, handle.error = "Failed", reason
                describe = {**describe, "FailureReason": reason}
        else:
            log_path.write_text("")
            program_lines = []
        # What the hosts printed, unprefixed: with N instances train.log prefixes each line
        # with its host, and the metric definitions apply to every host's lines.
        series = extract(program_lines, handle.run.metric_definitions)
        final = final_values(series)
        for metric in describe.get("FinalMetricDataList", []):
            final[metric["MetricName"]] = float(metric["Value"])
        status = _TERMINAL.get(handle.status, FAILED)
        reason = describe.get("FailureReason", "") or handle.error
        secondary = describe.get("SecondaryStatus")
        if status == STOPPED and secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            # SageMaker ends a job that ran out of time (or, on spot, out of waiting) as
            # Stopped with this secondary status: a timeout, not a stop anyone asked for.
            status = TIMED_OUT
            reason = (outcomes.max_runtime_reason(describe) if secondary == "MaxRuntimeExceeded"
                      else outcomes.max_wait_reason(describe))
        elif status == STOPPED and not reason:
            reason = "the job was stopped"
        created, began = (_seconds(describe.get(key)) for key in ("CreationTime",
                                                                  "TrainingStartTime"))
        pool = PoolState.from_describe(describe)
        started = began or handle.submitted_at
        ended = _seconds(describe.get("TrainingEndTime")) or time.time()
        result = RunResult(
            status=status, artifact_dir=attempt, log_path=log_path, model_dir=attempt / "model",
            final_metrics=final, metric_series=series, failure_reason=reason,
            started_at=started, ended_at=ended, backend=self.name,
            instance_type=handle.settings.instance_type, job_name=handle.job_name,
            billable_seconds=describe.get("BillableTimeInSeconds"),
            training_seconds=describe.get("TrainingTimeInSeconds"),
            spot=handle.settings.spot,
            start_seconds=None if created is None or began is None else round(began - created, 1),
            pool_from=handle.pool_from,
            pool_after=fate(pool) if pool.status else "",
            pool_idle_seconds=pool.idle_instance_seconds if pool.status else None,
        )
        if self.experiments is not None and handle.request is not None:
            self.experiments.finish_run(handle.run, result)
        return result

    def _download_logs(self, job_name: str, log_path: Path) -> list[str]:
        """Write the job's log to train.log (one instance: as its stream(s) are; several:
        interleaved by time, each line prefixed ``[algo-<n>] ``, see cloudwatch.job_log);
        return the program's own lines, for the metrics."""
        try:
            log = cloudwatch.job_log(self.logs, job_name)
            lines, program = log.lines, log.program_lines
        except Exception as exc:
            lines = [f"[sm-pytest] could not fetch the CloudWatch logs: {exc}"]
            program = []
        log_path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        return program

    def _download_outputs(self, handle: JobHandle, describe: dict) -> list[str]:
        """Fetch and safely extract the job's archives; return what went wrong, if anything.
        Only an archive that is not there is no problem: a job that failed early, or wrote
        no output data, uploads none."""
        problems = []
        output_path = describe.get("OutputDataConfig", {}).get("S3OutputPath", "")
        base = f"{output_path.rstrip('/')}/{handle.job_name}/output"
        for archive, folder in (("model.tar.gz", "model"), ("output.tar.gz", "output")):
            uri = f"{base}/{archive}"
            if archive == "model.tar.gz":
                uri = describe.get("ModelArtifacts", {}).get("S3ModelArtifacts") or uri
            local = handle.attempt_dir / archive
            try:
                bucket, key = parse_s3_uri(uri)
                self.s3.download_file(bucket, key, str(local))
            except Exception as exc:
                if error_code(exc) in _NOT_THERE:
                    continue
                problem = f"could not download the job's {archive} ({uri}): {exc}"
                if error_code(exc) in _DENIED:
                    problem += (" (these credentials need s3:GetObject on it; without"
                                " s3:ListBucket S3 answers 403 for a missing object too)")
                problems.append(problem)
                self.progress(f"{handle.job_name}: {problem}\n")
                continue
            try:
                safe_extract(local, handle.attempt_dir / folder)
            except UnsafeArchiveError as exc:
                problem = f"refused the job's {archive}, which is unsafe to extract: {exc}"
                problems.append(problem)
                self.progress(f"{handle.job_name}: {problem}\n")
        return problems


def _seconds(value) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)

