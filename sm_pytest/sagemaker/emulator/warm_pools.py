"""The emulator's managed warm pools: which ended job keeps its cluster, which new job takes
it, what the idle time bills, and when the pool ends.

    from sm_pytest.sagemaker.emulator.warm_pools import WarmPoolRegistry

    pools = WarmPoolRegistry(cache_root=workdir / "warm-pools")
    pools.set_quota("ml.m5.xlarge", 2)
    placement = pools.register("job-a", request)     # at CreateTrainingJob: InUse
    pools.job_ended("job-a", keeps=True)              # Available (quota permitting)
    pools.register("job-b", same_shape_request)       # takes it: job-a Reused by job-b
    pools.update("job-b", 0)                          # UpdateTrainingJob: ended now
    pools.status("job-a")                             # DescribeTrainingJob's WarmPoolStatus

What the service does (SageMaker developer guide, "Managed Warm Pools"; botocore 1.44.8):

* A job with ``ResourceConfig.KeepAlivePeriodInSeconds`` > 0, never a spot job, keeps its
  cluster after it ends if it Completed, was Stopped after training started
  (MaxRuntimeExceeded counts as stopped), or Failed with an AlgorithmError or ClientError
  (:func:`keeps_pool`); not after an internal error.
* Only if the account's quota "<instance type> for training warm pool usage" (default 0)
  has room: the instances of the Available pools of that type, plus this one, at most the
  quota. Without room the job's WarmPoolStatus ends Terminated, billing nothing.
* The pool is Available for KeepAlivePeriodInSeconds, then Terminated.
  ResourceRetainedBillableTimeInSeconds is the whole seconds it was Available, rounded up
  (any idle time bills at least 1 s), shown from the moment it is Available and growing
  while it is.
* A new job takes an Available pool when :func:`match_key` is identical (RoleArn;
  ResourceConfig InstanceCount, InstanceType, VolumeKmsKeyId, VolumeSizeInGB; VpcConfig
  SecurityGroupIds and Subnets as sets; EnableInterContainerTrafficEncryption;
  EnableNetworkIsolation, absent meaning False). Of several, the one Available longest.
  The old job's status becomes Reused (ReusedByJob: the new job), its billable time frozen.

Our choices, where the guide is silent or loose:

* A keep-alive job shows ``{"Status": "InUse"}`` from its creation until it ends; a job
  without keep-alive shows no WarmPoolStatus at all.
* Only a job that itself asks for keep-alive (and is not spot) takes a pool: the
  conservative reading of "Each subsequent training job must also specify a
  KeepAlivePeriodInSeconds value".
* Pools belong to one account and region (the scope given to :meth:`register`); the quota
  set here applies to each.
* UpdateTrainingJob: on an Available pool, 0 ends it now (billing the idle time so far) and
  N > 0 moves its end to (when it became Available + N), ending it now if that is past; on a
  job still running, the value applies when it ends (0: no pool). A Reused or Terminated
  pool, or a job without keep-alive, is refused (:class:`WarmPoolError`, our wording).
* The persistent cache (SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY, on SageMaker
  ``/opt/ml/sagemaker/warmpoolcache``): a folder under ``cache_root`` per cluster, made
  empty for a keep-alive job on a fresh cluster, handed on with the pool, removed when the
  pool ends.

Pure logic over an injected ``clock`` (seconds, monotonic); the only side effects are the
cache folders. Time moves on only when asked: every method first ends the pools whose
period is over. Not thread-safe by itself: the Emulator calls it under its lock.
"""

from __future__ import annotations

import itertools
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# WarmPoolStatus.Status, the service model's enum: one spelling for client and emulator.
from sm_pytest.sagemaker.warm_pools import AVAILABLE, IN_USE, REUSED, TERMINATED

__all__ = [
    "AVAILABLE",
    "CACHE_ENV",
    "IN_USE",
    "REUSED",
    "TERMINATED",
    "Placement",
    "WarmPool",
    "WarmPoolError",
    "WarmPoolRegistry",
    "keep_alive_seconds",
    "keeps_pool",
    "match_key",
]

#: The variable that tells the program where the pool's persistent cache is.
CACHE_ENV = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
# FailureReason prefixes of the failures that leave a pool ("AlgorithmError: ...").
_POOL_KEEPING_FAILURES = ("AlgorithmError", "ClientError")


class WarmPoolError(ValueError):
    """An UpdateTrainingJob the service refuses (a ValidationException); the message names
    the job and its pool's status."""


def keep_alive_seconds(request: dict[str, Any]) -> int:
    """The keep-alive a CreateTrainingJob request asks for; 0 for a spot job (warm pools
    are not available with managed spot training)."""
    if request.get("EnableManagedSpotTraining"):
        return 0
    resources = request.get("ResourceConfig") or {}
    return max(0, int(resources.get("KeepAlivePeriodInSeconds") or 0))


def match_key(request: dict[str, Any]) -> tuple:
    """What a new job must share with a pool's job to take the pool (the guide's list).
    Written again here rather than imported from sm_pytest.sagemaker.warm_pools on purpose:
    the emulator stands for the service, and a mistake in the client's reading of the rule
    must show as a pool not taken, not be shared by both sides."""
    resources = request.get("ResourceConfig") or {}
    vpc = request.get("VpcConfig") or {}
    return (
        request.get("RoleArn"),
        int(resources.get("InstanceCount") or 1),
        resources.get("InstanceType"),
        resources.get("VolumeKmsKeyId"),
        resources.get("VolumeSizeInGB"),
        frozenset(vpc.get("SecurityGroupIds") or ()),
        frozenset(vpc.get("Subnets") or ()),
        bool(request.get("EnableInterContainerTrafficEncryption")),
        bool(request.get("EnableNetworkIsolation")),
    )


def keeps_pool(status: str, failure_reason: str | None, trained: bool) -> bool:
    """Whether a keep-alive job that ended ``status`` keeps its cluster: Completed; Stopped
    once training had started (``trained``); Failed with an algorithm or client error."""
    if status == "Completed":
        return True
    if status == "Stopped":
        return trained
    if status == "Failed":
        return (failure_reason or "").startswith(_POOL_KEEPING_FAILURES)
    return False


@dataclass(frozen=True)
class WarmPool:
    """One keep-alive job's cluster, as it stands now (what ``Emulator.warm_pools`` lists):
    ``status`` is the job's WarmPoolStatus.Status; ``cache_dir`` the persistent cache folder
    the job holds (None once the pool has moved on or ended)."""

    job_name: str
    status: str
    instance_type: str
    instance_count: int
    reused_by: str | None
    billable_seconds: int
    cache_dir: Path | None


@dataclass(frozen=True)
class Placement:
    """Where a new keep-alive job runs: on the pool of ``reused_from`` (a warm start), or on
    a fresh cluster (None); ``cache_dir`` is its persistent cache folder."""

    reused_from: str | None
    cache_dir: Path | None

    @property
    def warm(self) -> bool:
        return self.reused_from is not None


class _Pool:
    """One keep-alive job's record (mutable; only the registry touches it)."""

    def __init__(self, job_name: str, scope: Any, key: tuple, keep_alive: int,
                 cache_dir: Path | None):
        self.job_name = job_name
        self.scope = scope
        self.key = key
        self.instance_count = key[1]
        self.instance_type = key[2]
        self.keep_alive = keep_alive  # UpdateTrainingJob may change it
        self.cache_dir = cache_dir
        self.status = IN_USE
        self.since: float | None = None  # when it became Available
        self.billable = 0  # frozen once it is no longer Available
        self.reused_by: str | None = None

    def billable_now(self, now: float) -> int:
        if self.status != AVAILABLE or self.since is None:
            return self.billable
        return _idle_seconds(now - self.since)


def _idle_seconds(seconds: float) -> int:
    """Whole seconds, rounded up, and at least 1: any idle time bills."""
    return max(1, math.ceil(seconds))


class WarmPoolRegistry:
    """Every keep-alive job's warm pool, in creation order (see the module docstring)."""

    def __init__(self, cache_root: Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        #: Where the persistent cache folders go (None: no folders, ``cache_dir`` None).
        self.cache_root = cache_root
        self._clock = clock
        self._pools: dict[str, _Pool] = {}
        self._quotas: dict[str, int] = {}
        self._cluster_numbers = itertools.count(1)

    # --- the quota --------------------------------------------------------------------------

    def set_quota(self, instance_type: str, instances: int) -> None:
        """The warm-pool quota of ``instance_type``, in instances (default 0, as on AWS)."""
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
            raise ValueError(f"the warm-pool quota of {instance_type} must be a whole number of "
                             f"instances, 0 or more, not {instances!r}")
        self._quotas[instance_type] = instances

    def quota(self, instance_type: str) -> int:
        return self._quotas.get(instance_type, 0)

    @property
    def quotas(self) -> dict[str, int]:
        """The quotas set so far, by instance type (every other type's is 0)."""
        return dict(self._quotas)

    def usage(self, instance_type: str, scope: Any = None) -> int:
        """The instances of the Available pools of that type (in ``scope``, if given)."""
        self.expire()
        return sum(p.instance_count for p in self._pools.values()
                   if p.status == AVAILABLE and p.instance_type == instance_type
                   and (scope is None or p.scope == scope))

    # --- a job's life -----------------------------------------------------------------------

    def register(self, job_name: str, request: dict[str, Any], scope: Any = None
                 ) -> Placement | None:
        """A job was created from ``request``: None when it asks for no pool; otherwise it is
        InUse, on the matching pool Available longest (that job becomes Reused by this one,
        its cache folder moves here) or on a fresh cluster with an empty cache folder."""
        keep_alive = keep_alive_seconds(request)
        if keep_alive <= 0:
            return None
        self.expire()
        key = match_key(request)
        candidates = [p for p in self._pools.values()
                      if p.status == AVAILABLE and p.scope == scope and p.key == key]
        taken = min(candidates, key=lambda p: p.since or 0.0, default=None)
        if taken is not None:
            now = self._clock()
            taken.billable = taken.billable_now(now)
            taken.status, taken.reused_by = REUSED, job_name
            cache_dir, taken.cache_dir = taken.cache_dir, None
        else:
            cache_dir = self._new_cache_dir()
        self._pools[job_name] = _Pool(job_name, scope, key, keep_alive, cache_dir)
        return Placement(taken.job_name if taken is not None else None, cache_dir)

    def job_ended(self, job_name: str, keeps: bool) -> None:
        """The job ended; ``keeps``: its outcome leaves a pool (:func:`keeps_pool`). The pool
        is Available if its keep-alive is still > 0 and the quota has room, else it ends."""
        pool = self._pools.get(job_name)
        if pool is None or pool.status != IN_USE:
            return
        room = self.quota(pool.instance_type) - self.usage(pool.instance_type, pool.scope)
        if keeps and pool.keep_alive > 0 and pool.instance_count <= room:
            pool.status, pool.since = AVAILABLE, self._clock()
        else:
            self._terminate(pool, billable=0)

    def update(self, job_name: str, keep_alive: int) -> None:
        """UpdateTrainingJob's ResourceConfig.KeepAlivePeriodInSeconds (see the module
        docstring); :class:`WarmPoolError` when the job has no pool to change."""
        self.expire()
        pool = self._pools.get(job_name)
        # Our wording: the service's own message for these cases is not documented.
        if pool is None:
            raise WarmPoolError(
                f"Training job '{job_name}' has no warm pool: it was created without "
                "ResourceConfig.KeepAlivePeriodInSeconds (or as a managed spot job), so "
                "there is no KeepAlivePeriodInSeconds to update.")
        if pool.status in (REUSED, TERMINATED):
            raise WarmPoolError(
                f"The warm pool of training job '{job_name}' is {pool.status}"
                + (f" (reused by '{pool.reused_by}')" if pool.reused_by else "")
                + ": only an InUse or Available warm pool's KeepAlivePeriodInSeconds can be "
                "updated.")
        pool.keep_alive = keep_alive
        if pool.status != AVAILABLE:
            return  # applies when the job ends
        now = self._clock()
        assert pool.since is not None
        if keep_alive <= 0 or pool.since + keep_alive <= now:
            self._terminate(pool, billable=_idle_seconds(now - pool.since))

    def expire(self) -> None:
        """End every Available pool whose period is over (billing the whole period)."""
        now = self._clock()
        for pool in self._pools.values():
            if (pool.status == AVAILABLE and pool.since is not None
                    and now >= pool.since + pool.keep_alive):
                self._terminate(pool, billable=pool.keep_alive)

    def _terminate(self, pool: _Pool, *, billable: int) -> None:
        pool.status, pool.billable = TERMINATED, billable
        if pool.cache_dir is not None:
            shutil.rmtree(pool.cache_dir, ignore_errors=True)
            pool.cache_dir = None

    def _new_cache_dir(self) -> Path | None:
        if self.cache_root is None:
            return None
        folder = self.cache_root / f"cluster-{next(self._cluster_numbers)}"
        folder.mkdir(parents=True)
        return folder

    # --- what the service shows ---------------------------------------------------------------

    def status(self, job_name: str) -> dict[str, Any] | None:
        """The job's WarmPoolStatus as DescribeTrainingJob shows it; None: it has none."""
        self.expire()
        pool = self._pools.get(job_name)
        if pool is None:
            return None
        shown: dict[str, Any] = {"Status": pool.status}
        if pool.status != IN_USE:
            shown["ResourceRetainedBillableTimeInSeconds"] = pool.billable_now(self._clock())
        if pool.reused_by is not None:
            shown["ReusedByJob"] = pool.reused_by
        return shown

    def job_names(self) -> list[str]:
        """Every keep-alive job, in creation order."""
        return list(self._pools)

    def pools(self) -> list[WarmPool]:
        """Every keep-alive job's pool as it stands now, in creation order."""
        self.expire()
        now = self._clock()
        return [WarmPool(p.job_name, p.status, p.instance_type, p.instance_count, p.reused_by,
                         p.billable_now(now), p.cache_dir)
                for p in self._pools.values()]
