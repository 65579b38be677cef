"""What one pytest session needs for --sm: settings per run, the emulator when asked for,
the backend, and SageMaker Experiments. Imported only when --sm is given."""

from __future__ import annotations

import atexit
import dataclasses
import fcntl
import gc
import json
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

from sm_pytest.sagemaker import settings as sm_settings
from sm_pytest.spec.experiment_file import RunSpec

EMULATED_ROLE = "arn:aws:iam::123456789012:role/sm-pytest-emulated"
EMULATED_BUCKET = "sm-pytest-emulated"
EMULATED_REGION = "us-east-1"
# Printed at the end of an emulated session that sent requests AWS would refuse.
REFUSED_NOTICE = "the emulator refused"
PLAN_KEPT_S = 24 * 3600  # shared plans older than this are dropped from the plan file
# How SageMakerSession.stop_jobs names the jobs it stopped, by why it stopped them.
ON_INTERRUPT = "stopped SageMaker jobs on interrupt"
STILL_RUNNING = "stopped SageMaker jobs that were still running"


def boto_session(region: str | None):
    import boto3

    return boto3.Session(region_name=region)


class SageMakerSession:
    def __init__(self, *, cli: dict, ini: dict, config_path: Path | None, token: str,
                 emit: Callable[[str], None], plan_file: Path | None = None,
                 plan_key: str | None = None, notify: Callable[[str], None] | None = None):
        self.cli, self.ini, self.config_path = cli, ini, config_path
        self.token = token
        # pytest-xdist: the processes of one test run share one Experiments plan (_plan).
        self.plan_file, self.plan_key = plan_file, plan_key
        self._plan_error: Exception | None = None
        # emit: progress, worth seeing live only; notify: what must reach the user even
        # from a pytest-xdist worker, whose terminal nobody sees (refusals, rollovers,
        # stopped jobs, saved evidence).
        self.emit = emit
        self.notify = notify or emit
        self.lines: queue.Queue[str] = queue.Queue()
        self.emulator = None
        self.backend = None
        self.experiments = None
        self._settings: dict[tuple[str, str, int], sm_settings.SageMakerSettings] = {}
        self._notices_said: set[str] = set()
        # For the lines after the summary table (SageMakerHooks passes them on): what the
        # warm pools came to, and what could not be checked.
        self.notes: list[str] = []
        # Job name -> what became of its warm pool (report/pools.apply), once it is known.
        self.pool_facts: dict[str, dict] = {}
        self._pools_finished = False

    def settings_for(self, run: RunSpec) -> sm_settings.SageMakerSettings:
        """The run's settings. They depend on nothing but its file and `sagemaker:` block
        (the rest is the session's), and every run is asked for them several times (check,
        fingerprint, launch): resolved once per distinct block and instance count."""
        key = (str(run.path), json.dumps(run.sagemaker, sort_keys=True, default=str),
               run.instance_count)
        if key not in self._settings:
            self._settings[key] = self._resolve(run)
        return self._settings[key]

    def _resolve(self, run: RunSpec) -> sm_settings.SageMakerSettings:
        resolved = sm_settings.resolve(cli=self.cli, ini=self.ini, config_path=self.config_path,
                                       experiment_block=run.sagemaker, environ=os.environ,
                                       experiment_path=run.path,
                                       instance_count=run.instance_count)
        for line in resolved.notices:  # e.g. a deprecated config key; each said once
            if line not in self._notices_said:
                self._notices_said.add(line)
                self.notice(line)
        if resolved.emulate:
            # An emulated account needs no real role or bucket.
            resolved = dataclasses.replace(resolved, role=resolved.role or EMULATED_ROLE,
                                           bucket=resolved.bucket or EMULATED_BUCKET,
                                           region=resolved.region or EMULATED_REGION)
        return resolved

    def prices(self) -> dict[str, float]:
        """USD per instance-hour from the config file's `prices:` (for --sm-plan)."""
        from sm_pytest.sagemaker.prices import prices_in_file

        return prices_in_file(self.config_path)

    def check(self, runs: list[RunSpec]) -> None:
        """Every setting problem of every selected run, raised once, before any launch."""
        problems: dict[str, None] = {}
        for run in runs:
            try:
                sm_settings.require_launch_settings(self.settings_for(run))
            except sm_settings.SettingsError as exc:
                problems[str(exc)] = None
        if problems:
            raise sm_settings.SettingsError("\n".join(problems))

    def start(self, runs: list[RunSpec]):
        """Create the backend (and the emulator first, when asked for) and plan the
        Experiments names of `runs`. Called again, it only plans the new runs."""
        if self.backend is not None:
            self._plan(runs)
            self.flush()
            return self.backend
        from sm_pytest.backends.sagemaker import SageMakerBackend
        from sm_pytest.sagemaker.experiments import SageMakerExperiments

        _skip_final_collections()
        first = self.settings_for(runs[0])
        if first.emulate and self.emulator is None:
            from sm_pytest.sagemaker.emulator.knobs import from_environment
            from sm_pytest.sagemaker.emulator.service import Emulator

            knobs = from_environment(os.environ)  # a bad value stops us before it starts
            self.emulator = Emulator(region=first.region or "us-east-1")
            self.emulator.__enter__()
            for arm in knobs:
                arm(self.emulator)
        # One boto session for both: the backend is given its JobTracker when it is made.
        boto = boto_session(first.region)
        self.experiments = SageMakerExperiments(boto, notice=self.notice)
        self.backend = SageMakerBackend(
            settings_for=self.settings_for, region=first.region, token=self.token,
            max_parallel=first.max_parallel, progress=self.lines.put,
            poll_interval=0.5 if first.emulate else 15.0, tick=self.flush,
            experiments=self.experiments, boto_session=boto, keep_pools=first.keep_pools)
        if first.emulate:
            self.backend.s3.create_bucket(Bucket=first.bucket)  # a setting of the session
        self._check_pool_quotas(runs, boto, max_parallel=first.max_parallel)
        self._plan(runs)
        self.flush()
        return self.backend

    def _check_pool_quotas(self, runs: list[RunSpec], boto, *, max_parallel: int) -> None:
        """Before anyone waits: the warm-pool quota of each instance type whose runs keep a
        warm pool (a tuning job's trials keep none). It is 0 until asked for, and then
        keep_alive does nothing at all."""
        from sm_pytest.sagemaker.warm_pools import quota_name, read_quotas, request_command

        pooled: dict[str, list[RunSpec]] = {}
        for run in runs:
            settings = self.settings_for(run)
            if settings.keep_alive_s > 0 and not settings.spot and run.tune is None:
                pooled.setdefault(settings.instance_type, []).append(run)
        if not pooled:
            return
        try:
            answers = read_quotas(boto.client("service-quotas"), sorted(pooled))
        except Exception as exc:  # no client at all (an old botocore): a note, not an error
            self.notes.append(f"warm pools: could not check the warm-pool quota: {exc}")
            return
        emulated = self.emulator is not None
        for instance_type, answer in answers.items():
            # Pools free at most as many at once as jobs run at once.
            runs_of_type = pooled[instance_type]
            instances = (min(max_parallel, len(runs_of_type))
                         * max(run.instance_count for run in runs_of_type))
            name = quota_name(instance_type)
            if answer.value is None:
                self.notes.append(f"warm pools: could not read the quota {name!r}"
                                  f" ({answer.problem}); keep_alive keeps an instance only if"
                                  " that quota is above 0")
                continue
            if answer.value >= instances:
                continue
            if answer.value < 1:
                line = (f"warm pools: the quota {name!r} is 0 in {boto.region_name}, so"
                        " keep_alive will have no effect (no job keeps its instance, every job"
                        " starts cold; the jobs still run). "
                        + ("Emulated: SM_PYTEST_EMULATE_WARM_POOL_QUOTA="
                           f"{instance_type}={instances} grants it" if emulated else
                           "Ask for it in the Service Quotas console (Amazon SageMaker, search"
                           " 'warm pool') or with: "
                           + request_command(answer, boto.region_name, instances)))
            else:
                line = (f"warm pools: the quota {name!r} is {answer.value:g}: at most that many"
                        f" instances stay warm at once, fewer than the {instances} that"
                        f" {min(max_parallel, len(runs_of_type))} jobs at a time may free;"
                        " the other jobs start cold")
            self.notify(line)
            self.notes.append(line)

    def _plan(self, runs: list[RunSpec]) -> None:
        """The Experiments names, planned once per session before any launch. Under
        pytest-xdist every worker collects every item and plans at collection for all of
        them: the first to take the plan file's lock plans, the others wait and follow its
        plan. A plan that failed (one file with more than 50 runs) fails every later call,
        so that no item launches on a plan made for itself alone."""
        if self._plan_error is not None:
            raise self._plan_error
        from sm_pytest.sagemaker.experiments import ExperimentLimitError

        try:
            if self.plan_file is None or self.plan_key is None or self.experiments.rollover:
                self.experiments.plan(runs)
                return
            entry = _shared_plan(self.plan_file, self.plan_key, lambda: {
                "rollover": self.experiments.plan(runs), "planned": self.experiments.planned})
            self.experiments.adopt(entry["rollover"], entry["planned"])
            self.experiments.plan(runs)  # runs the shared plan lacks, if any
        except ExperimentLimitError as exc:
            self._plan_error = exc
            raise

    def notice(self, line: str) -> None:
        """A notice from any thread, passed on in order with the progress lines (flush)."""
        self.lines.put(_Notice(line))

    def flush(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            (self.notify if isinstance(line, _Notice) else self.emit)(line.rstrip("\n"))

    def stop_jobs(self, what: str) -> None:
        """Stop what this session still runs, and say which jobs, as a notice (under
        pytest-xdist it reaches the controller's terminal). `what`: ON_INTERRUPT or
        STILL_RUNNING."""
        stopped = self.close()
        if stopped:
            self.notify(f"{what}: {', '.join(stopped)}")

    def close(self) -> list[str]:
        """Stop whatever this session launched and is still running; say which."""
        stopped = []
        try:
            if self.backend is not None:
                self.backend.stop_all()
                stopped = list(self.backend.stopped)
                self.backend.stopped.clear()
                self.backend.close()
                try:
                    # First: on AWS fetching what the unfinished jobs left can take long, and
                    # a second Ctrl-C meanwhile must not leave the pools billing unsaid.
                    self._finish_pools()
                finally:
                    self._save_leftovers()
        finally:
            self.flush()
            if self.emulator is not None:
                self.emulator.wait_idle(timeout=30)
                self._report_refusals()
                self.emulator.__exit__(None, None, None)
                self.emulator = None
        return stopped

    def _finish_pools(self) -> None:
        """Release the pools no job can use any more (unless --sm-keep-pools), then read
        what became of every pool, for the summary."""
        from sm_pytest.backends.sagemaker_pools import RELEASE_WAIT_S

        if self._pools_finished:  # close() runs again at the end: the emulator may be gone
            return
        self._pools_finished = True
        jobs = self.backend.pool_jobs()
        if not jobs:
            return
        emulated = self.emulator is not None
        for line in self.backend.pools.finish(jobs, wait_s=30.0 if emulated else
                                              RELEASE_WAIT_S):
            self.notify(line)
            self.notes.append(line)
        self.pool_facts.update(self.backend.pools.facts([name for name, _ in jobs]))

    def _report_refusals(self) -> None:
        """Some calls (Experiments logging, say) are allowed to fail without costing the run;
        a request that AWS would refuse must still never pass unseen."""
        refused = list(self.emulator.refused)
        if not refused:
            return
        self.notify(f"{REFUSED_NOTICE} {len(refused)} request(s), as AWS would:")
        for operation, text in refused[:10]:
            self.notify(f"  {operation}: {text}")
        if len(refused) > 10:
            self.notify(f"  ... and {len(refused) - 10} more")

    def _save_leftovers(self) -> None:
        from sm_pytest.backends import runner

        saved = []
        for result in self.backend.leftovers():
            try:
                runner.save(result)
                saved.append(str(result.artifact_dir))
            except OSError as exc:
                self.notice(f"could not save {result.artifact_dir}: {exc}")
        if saved:
            self.notice(f"saved the results and logs of {len(saved)} job(s) this session did"
                        f" not wait for: {', '.join(saved)}")


class _Notice(str):
    """A queued line that is a notice, not progress (SageMakerSession.notify)."""


def _shared_plan(path: Path, key: str, make: Callable[[], dict]) -> dict:
    """The plan stored under `key` in `path`, made by make() and stored when absent; the
    file is locked meanwhile (fcntl: every process of a test run is on this host)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file is closed
        try:
            plans = json.loads(file.read() or "{}")
        except ValueError:
            plans = {}
        if key in plans:
            return plans[key]
        now = time.time()
        plans = {k: v for k, v in plans.items() if now - v.get("at", 0) < PLAN_KEPT_S}
        plans[key] = {**make(), "at": now}
        file.seek(0)
        file.truncate()
        json.dump(plans, file, indent=1, sort_keys=True)
        return plans[key]


_FREEZE_AT_EXIT = []


def _skip_final_collections() -> None:
    """The SDK, botocore's service models and moto leave millions of objects behind; the
    interpreter's last garbage collections walked them for about 1 s after the summary was
    printed. Frozen at exit, they are skipped (memory is the OS's to take back). Done at
    exit, not now, so that an in-process pytest run (pytester) never freezes its host."""
    if not _FREEZE_AT_EXIT:
        _FREEZE_AT_EXIT.append(atexit.register(gc.freeze))
