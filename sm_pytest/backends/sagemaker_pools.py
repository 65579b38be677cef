"""This session's SageMaker warm pools (sagemaker/warm_pools.py says what they are): which
job queued behind max_parallel takes a finishing job's pool, whether it really started on
one, and the release of every pool that no job of the session can use any more.

Why: a pool bills its idle time (ResourceRetainedBillableTimeInSeconds x instances) until a
matching job takes it or its keep-alive ends. Left alone, the pools of a session's last jobs
idle for the whole keep-alive period (30 minutes by default) for a job that never comes.

The poller thread of SageMakerBackend calls ``choose``, ``ended``, ``confirm`` and
``release_unneeded``; the session calls ``finish`` and ``facts`` once everything has ended.
A tuning job's trials keep no pool (sagemaker/tuning.py), so only plain jobs are here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sm_pytest.sagemaker import request as requests
from sm_pytest.sagemaker.warm_pools import (
    AVAILABLE,
    IN_USE,
    REUSED,
    TERMINATED,
    PoolState,
    fate,
    keeps_pool,
    match_key,
    release_command,
)

if TYPE_CHECKING:
    from sm_pytest.backends.sagemaker import JobHandle

RELEASE_WAIT_S = 150.0  # on AWS: a stopped job takes a minute or two to end
# Jobs of earlier sessions whose pools ours may have taken (--sm-keep-pools): the newest
# this many that ListTrainingJobs lists as Reused.
EARLIER_JOBS_LISTED = 200
_ENDED_POOL = (REUSED, TERMINATED)


class PoolKeeper:
    """The warm pools of one SageMakerBackend's jobs (see the module docstring)."""

    def __init__(self, sm, progress: Callable[[str], None], *, keep: bool,
                 region: str | None, poll_interval: float):
        self.sm = sm
        self.progress = progress
        self.keep = keep  # --sm-keep-pools: release nothing
        self.region = region
        self.poll_interval = poll_interval
        # Set once the session will submit no further job (SageMakerBackend.no_more_jobs):
        # only then can a pool that no queued job matches be released before the end.
        self.all_submitted = False
        self.free: list[JobHandle] = []  # ended jobs whose pool may be Available, oldest first
        # Chosen to launch and asking for a pool, until it is known which pool, if any, they
        # started on: the pools of their shape are not released meanwhile (a launch takes
        # seconds, and a pool may come free during it).
        self.starting: list[JobHandle] = []
        self.released: list[str] = []
        self.unreleased: dict[str, str] = {}  # job -> why UpdateTrainingJob failed (not retried)
        # Job -> the job of ours whose pool it took, as the pools' describes said (asking
        # one pool may answer for another job than the one being confirmed).
        self.took: dict[str, str] = {}
        self._lock = threading.Lock()
        self._finished = False

    # -- while jobs run (the poller thread) ---------------------------------------------------

    @staticmethod
    def key_of(handle: JobHandle) -> tuple:
        """What the handle's job must share with a pool to start on it: from its request
        once built, before that from its settings (the same members, request.pool_fields)."""
        return match_key(handle.request or requests.pool_fields(handle.run, handle.settings))

    @staticmethod
    def wants_pool(handle: JobHandle) -> bool:
        return keeps_pool(handle.request or requests.pool_fields(handle.run, handle.settings))

    def choose(self, queue: list[JobHandle], slots: int) -> list[JobHandle]:
        """Take up to `slots` jobs off `queue` to launch now: for each pool that may be free,
        oldest first, the first queued job that matches it; then the others in queue order."""
        chosen: list[JobHandle] = []
        with self._lock:
            free = list(self.free)
        for pool in free:
            if len(chosen) >= slots:
                break
            key = match_key(pool.request or {})
            match = next((h for h in queue if h not in chosen and self.wants_pool(h)
                          and self.key_of(h) == key), None)
            if match is not None:
                chosen.append(match)
        chosen += [h for h in queue if h not in chosen][:max(0, slots - len(chosen))]
        with self._lock:
            for handle in chosen:
                queue.remove(handle)
                if self.wants_pool(handle):
                    self.starting.append(handle)
        return chosen

    def forget(self, handle: JobHandle) -> None:
        """Its launch failed: it takes no pool."""
        with self._lock:
            if handle in self.starting:
                self.starting.remove(handle)

    def _candidates(self, handle: JobHandle) -> list[JobHandle]:
        key = self.key_of(handle)
        return [pool for pool in self.free if match_key(pool.request or {}) == key]

    def ended(self, handle: JobHandle) -> None:
        """The job ended: its pool (if it asked for one) may now be free."""
        if keeps_pool(handle.request or {}):
            with self._lock:
                self.free.append(handle)
                if handle in self.starting:
                    self.starting.remove(handle)

    def confirm(self, handle: JobHandle) -> None:
        """Once the job has started on its instances (TrainingStartTime): which pool of ours
        it started on, if any. The service moves a pool to a matching job by itself, so the
        matching pools are asked (their WarmPoolStatus says Reused, ReusedByJob) rather than
        assumed."""
        with self._lock:
            if handle not in self.starting:
                return
            self.starting.remove(handle)
            candidates = self._candidates(handle)
        for pool in candidates:
            if handle.job_name in self.took:
                break
            self._state(pool.job_name)  # a Reused pool says whose it became (self.took)
        if handle.job_name in self.took:
            handle.pool_from = self.took[handle.job_name]
            self.progress(f"{handle.job_name}: started on the warm pool of"
                          f" {handle.pool_from}\n")
        elif candidates:
            self.progress(f"{handle.job_name}: did not start on a warm pool of this session"
                          " (none of its matching pools was moved to it)\n")

    def release_unneeded(self, queue: list[JobHandle]) -> None:
        """Release each free pool that no queued job can use, once the session submits no
        more jobs: not with --sm-keep-pools, and not while a job of ours may be taking it."""
        if self.keep or not self.all_submitted:
            return
        wanted = {self.key_of(h) for h in queue if self.wants_pool(h)}
        with self._lock:
            wanted |= {self.key_of(h) for h in self.starting}
            idle = [pool for pool in self.free if match_key(pool.request or {}) not in wanted]
        for pool in idle:
            state = self._state(pool.job_name)
            if state is None or state.status == IN_USE:
                continue  # not free yet: asked again at the next poll
            if state.status == AVAILABLE and self._update(pool.job_name) is None:
                self.progress(f"{pool.job_name}: released its warm pool (no job of this"
                              " session can use it)\n")

    # -- the end of the session ------------------------------------------------------------

    def finish(self, jobs: list[tuple[str, int]], *, wait_s: float = RELEASE_WAIT_S,
               sleep: Callable[[float], None] = time.sleep) -> list[str]:
        """The end of the session. `jobs`: (name, keep-alive seconds) of every job it
        launched that asked for a pool. Waits (at most `wait_s`) for those still running or
        stopping (a stopped job takes a while), then releases every pool still Available,
        unless --sm-keep-pools. A second Ctrl-C meanwhile ends the wait and lists the command
        that ends each pool not released. Returns the notices; a second call returns []."""
        if self._finished or not jobs:
            return []
        self._finished = True
        period = dict(jobs)
        states: dict[str, PoolState | None] = {}
        failed: list[tuple[str, str]] = list(self.unreleased.items())
        try:
            states = {name: self._state(name) or self._state(name) for name, _ in jobs}
            failed += [(name, "could not read its warm pool") for name, state in states.items()
                       if state is None]
            if self.keep:
                return self._kept([n for n, s in states.items() if s and s.status == AVAILABLE],
                                  period)
            # The Available ones first: they bill while the others are waited for.
            failed += self._release_available(states)
            ending = [name for name, s in states.items() if s is not None
                      and s.status == IN_USE]
            if ending:
                self.progress(f"waiting up to {wait_s:.0f} s for {len(ending)} job(s) to end,"
                              " to release their warm pools (Ctrl-C again leaves them)\n")
            deadline = time.monotonic() + wait_s
            while ending and time.monotonic() < deadline:
                sleep(self.poll_interval)
                for name in list(ending):
                    states[name] = self._state(name) or states[name]
                    if states[name].status != IN_USE:
                        ending.remove(name)
                        failed += self._release_available({name: states[name]})
            failed += [(name, "the job had not ended") for name in ending]
        except KeyboardInterrupt:
            settled = {name for name, s in states.items() if s and s.status in _ENDED_POOL}
            failed = [(name, "interrupted") for name, _ in jobs
                      if name not in self.released and name not in settled]
        return self._release_notices(failed)

    def _release_available(self, states: dict[str, PoolState | None]) -> list[tuple[str, str]]:
        """Release each pool the states say is Available; (job, why) of those that failed."""
        failed = []
        for name, state in states.items():
            if (state is not None and state.status == AVAILABLE and name not in self.released
                    and name not in self.unreleased):
                why = self._update(name)
                if why is not None:
                    failed.append((name, why))
        return failed

    def _kept(self, available: list[str], period: dict[str, int]) -> list[str]:
        if not available:
            return []
        return [f"left {len(available)} warm pool(s) Available for the next session"
                f" (--sm-keep-pools): {', '.join(available)}; each bills its idle time until"
                " a matching job takes it or its keep_alive (up to"
                f" {max(period[name] for name in available)} s) ends"]

    def _release_notices(self, failed: list[tuple[str, str]]) -> list[str]:
        notices = []
        if self.released:
            notices.append(f"released the warm pools of {len(self.released)} job(s) that no"
                           " job of this session could use (UpdateTrainingJob"
                           f" KeepAlivePeriodInSeconds=0): {', '.join(self.released)}")
        if failed:
            notices.append(
                "could not release the warm pools of "
                + "; ".join(f"{name} ({why})" for name, why in failed)
                + "; they bill until their keep_alive ends, or end them with: "
                + " && ".join(release_command(name, self.region) for name, _ in failed))
        return notices

    def facts(self, jobs: list[str]) -> dict[str, dict[str, Any]]:
        """What became of each job's pool, read now, for the summary (report/pools.apply):
        job name -> pool_after, pool_idle_seconds and, for a job that started on a pool of
        another job (of this session, or of an earlier one: --sm-keep-pools), pool_from."""
        facts: dict[str, dict[str, Any]] = {}
        for name in jobs:
            state = self._state(name)
            if state is not None and state.status:
                facts[name] = {"pool_after": fate(state, released=name in self.released),
                               "pool_idle_seconds": state.idle_instance_seconds}
        ours = set(jobs)
        for job, owner in {**self._earlier_pools(ours), **self.took}.items():
            if job in ours:
                facts.setdefault(job, {})["pool_from"] = owner
        return facts

    def _earlier_pools(self, ours: set[str]) -> dict[str, str]:
        """Job of ours -> the job of an earlier session whose pool it took: only that job's
        WarmPoolStatus names it (ReusedByJob), so the newest Reused jobs are listed."""
        took: dict[str, str] = {}
        try:
            pages = self.sm.get_paginator("list_training_jobs").paginate(
                WarmPoolStatusEquals=REUSED, SortBy="CreationTime", SortOrder="Descending",
                PaginationConfig={"MaxItems": EARLIER_JOBS_LISTED, "PageSize": 100})
            for page in pages:
                for summary in page.get("TrainingJobSummaries", []):
                    reuser = (summary.get("WarmPoolStatus") or {}).get("ReusedByJob", "")
                    if reuser in ours and summary["TrainingJobName"] not in ours:
                        took[reuser] = summary["TrainingJobName"]
        except Exception as exc:  # the summary then shows these starts as cold
            self.progress(f"could not list earlier sessions' warm pools: {exc}\n")
        return took

    # -- calls ------------------------------------------------------------------------------

    def _state(self, job_name: str) -> PoolState | None:
        """The job's WarmPoolStatus now; a Reused one also tells whose it became (took)."""
        try:
            state = PoolState.from_describe(
                self.sm.describe_training_job(TrainingJobName=job_name))
        except Exception as exc:
            self.progress(f"{job_name}: could not read its warm pool: {exc}\n")
            return None
        if state.status in _ENDED_POOL:
            with self._lock:
                self.free = [pool for pool in self.free if pool.job_name != job_name]
                if state.status == REUSED and state.reused_by:
                    self.took[state.reused_by] = job_name
        return state

    def _update(self, job_name: str) -> str | None:
        """UpdateTrainingJob KeepAlivePeriodInSeconds 0; None, or what went wrong."""
        try:
            self.sm.update_training_job(TrainingJobName=job_name,
                                        ResourceConfig={"KeepAlivePeriodInSeconds": 0})
        except Exception as exc:
            # Said once and not retried at each poll (AccessDenied stays denied): the end of
            # the session lists it with the command that ends the pool.
            self.progress(f"{job_name}: could not release its warm pool: {exc}\n")
            with self._lock:
                self.free = [pool for pool in self.free if pool.job_name != job_name]
                self.unreleased[job_name] = str(exc)
            return str(exc)
        with self._lock:
            self.free = [pool for pool in self.free if pool.job_name != job_name]
            if job_name not in self.released:
                self.released.append(job_name)
        return None
