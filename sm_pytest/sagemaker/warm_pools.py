"""What SageMaker's managed warm pools are, as requests and answers: which jobs can share a
pool, what DescribeTrainingJob says of one, and the account's warm-pool quota.

Sources (SageMaker developer guide, "SageMaker AI Managed Warm Pools", and the botocore 1.44
service model):

* A job with ``ResourceConfig.KeepAlivePeriodInSeconds`` > 0 keeps its cluster after it
  ends; "The next training job is a match if the following values are identical": RoleArn,
  ResourceConfig InstanceCount, InstanceType, VolumeKmsKeyId and VolumeSizeInGB, VpcConfig
  SecurityGroupIds and Subnets, EnableInterContainerTrafficEncryption and
  EnableNetworkIsolation (``match_key``).
* DescribeTrainingJob's ``WarmPoolStatus``: Status InUse, Available, Reused or Terminated,
  ``ResourceRetainedBillableTimeInSeconds`` ("Multiply ... by the number of instances
  (InstanceCount) in your training cluster to get the total compute time SageMaker bills
  you"), and ``ReusedByJob`` (``PoolState``).
* "The default resource limit for warm pools is 0": the Service Quotas quota named
  ``<instance type> for training warm pool usage`` (service code ``sagemaker``), read with
  ListServiceQuotas (``read_quotas``). Without it a job's pool is never kept.
* UpdateTrainingJob with ``ResourceConfig.KeepAlivePeriodInSeconds`` 0 ends an Available pool
  ("To manually terminate a warm pool, set the KeepAlivePeriodInSeconds value to 0").
* The persistent cache, ``/opt/ml/sagemaker/warmpoolcache``
  (``SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY``), survives from job to job on one pool.

Standard library only; the caller passes the boto3 clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AVAILABLE",
    "CACHE_DIR",
    "IN_USE",
    "PIP_CACHE_DIR",
    "REUSED",
    "TERMINATED",
    "PoolState",
    "QuotaAnswer",
    "differences",
    "fate",
    "keeps_pool",
    "match_key",
    "quota_name",
    "read_quotas",
    "release_command",
    "request_command",
]

IN_USE, AVAILABLE, REUSED, TERMINATED = "InUse", "Available", "Reused", "Terminated"
CACHE_DIR = "/opt/ml/sagemaker/warmpoolcache"
PIP_CACHE_DIR = f"{CACHE_DIR}/pip"
QUOTA_SERVICE = "sagemaker"
QUOTAS_PAGE = 100  # ListServiceQuotas MaxResults: 1-100
# The answers of a caller that may not read Service Quotas.
_DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}

# The members that must be identical, in the order the guide lists them; (path, label).
_MATCHED = (
    (("RoleArn",), "RoleArn"),
    (("ResourceConfig", "InstanceCount"), "InstanceCount"),
    (("ResourceConfig", "InstanceType"), "InstanceType"),
    (("ResourceConfig", "VolumeKmsKeyId"), "VolumeKmsKeyId"),
    (("ResourceConfig", "VolumeSizeInGB"), "VolumeSizeInGB"),
    (("VpcConfig", "SecurityGroupIds"), "VpcConfig.SecurityGroupIds"),
    (("VpcConfig", "Subnets"), "VpcConfig.Subnets"),
    (("EnableInterContainerTrafficEncryption",), "EnableInterContainerTrafficEncryption"),
    (("EnableNetworkIsolation",), "EnableNetworkIsolation"),
)
_FLAGS = {"EnableInterContainerTrafficEncryption", "EnableNetworkIsolation"}


def keeps_pool(request: dict[str, Any]) -> bool:
    """Whether a job made from this CreateTrainingJob request asks for a warm pool (spot
    jobs cannot have one; request.build_request leaves their keep-alive out)."""
    resources = request.get("ResourceConfig") or {}
    return (int(resources.get("KeepAlivePeriodInSeconds") or 0) > 0
            and not request.get("EnableManagedSpotTraining"))


def _member(request: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = request
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if path[-1] in _FLAGS:
        return bool(value)  # left out means False
    if isinstance(value, list):
        return tuple(sorted(value))  # the same groups and subnets, in any order
    return value


def match_key(request: dict[str, Any]) -> tuple:
    """What a job's request must share with a pool's job for the pool to move to it."""
    return tuple(_member(request, path) for path, _ in _MATCHED)


def differences(request: dict[str, Any], pool_request: dict[str, Any]) -> list[str]:
    """The matched members in which `request` differs from the pool's job, as
    ``VolumeSizeInGB 50 (the pool's: 30)``; empty when it matches."""
    found = []
    for path, label in _MATCHED:
        mine, theirs = _member(request, path), _member(pool_request, path)
        if mine != theirs:
            found.append(f"{label} {mine} (the pool's: {theirs})")
    return found


@dataclass(frozen=True)
class PoolState:
    """DescribeTrainingJob's WarmPoolStatus of one job, and its cluster size."""

    status: str = ""  # "" when the job asked for no pool
    retained_seconds: int = 0  # ResourceRetainedBillableTimeInSeconds
    reused_by: str = ""
    instance_count: int = 1

    @classmethod
    def from_describe(cls, describe: dict[str, Any]) -> PoolState:
        pool = describe.get("WarmPoolStatus") or {}
        count = (describe.get("ResourceConfig") or {}).get("InstanceCount") or 1
        return cls(status=pool.get("Status", ""),
                   retained_seconds=int(pool.get("ResourceRetainedBillableTimeInSeconds") or 0),
                   reused_by=pool.get("ReusedByJob", ""), instance_count=int(count))

    @property
    def idle_instance_seconds(self) -> int:
        """What the pool's idle time bills: retained seconds x instances."""
        return self.retained_seconds * self.instance_count


def fate(state: PoolState, *, released: bool = False) -> str:
    """What became of a job's pool, as the summary's `pool_after` says it: "reused by
    <job>", "released" (by this session), "terminated" (its keep-alive ran out), "not kept"
    (no quota, or the job failed so that no pool was made), "available" or "in use"; ""
    when the job asked for none."""
    if state.status == REUSED:
        return f"reused by {state.reused_by}"
    if released and state.status in (AVAILABLE, TERMINATED):
        return "released"  # asked to end: the service may still say Available a moment
    if state.status == TERMINATED:
        return "terminated" if state.retained_seconds else "not kept"
    return {AVAILABLE: "available", IN_USE: "in use"}.get(state.status, state.status.lower())


def quota_name(instance_type: str) -> str:
    return f"{instance_type} for training warm pool usage"


@dataclass(frozen=True)
class QuotaAnswer:
    """The warm-pool quota of one instance type: `value` (instances), or None with `problem`
    saying why it could not be read."""

    instance_type: str
    value: float | None = None
    code: str = ""  # the QuotaCode, for the request command
    problem: str = ""


def read_quotas(client, instance_types: list[str]) -> dict[str, QuotaAnswer]:
    """The applied warm-pool quota of each instance type (ListServiceQuotas), else its AWS
    default (ListAWSDefaultServiceQuotas: a quota never raised may be listed there only),
    read in one pass over each list. `client` is a boto3 service-quotas client. Never
    raises: a caller without Service Quotas permissions, or any other failure, is an answer
    with a problem."""
    wanted = {quota_name(t): t for t in instance_types}
    found: dict[str, QuotaAnswer] = {}
    try:
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            pages = client.get_paginator(operation).paginate(
                ServiceCode=QUOTA_SERVICE, PaginationConfig={"PageSize": QUOTAS_PAGE})
            for page in pages:
                for quota in page.get("Quotas", []):
                    instance_type = wanted.get(quota.get("QuotaName", ""))
                    if instance_type and instance_type not in found:
                        found[instance_type] = QuotaAnswer(
                            instance_type, float(quota.get("Value") or 0.0),
                            code=quota.get("QuotaCode", ""))
                if len(found) == len(wanted):
                    return found
    except Exception as exc:  # permissions, network: a line in the notes, never an error
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        why = ("this caller may not read Service Quotas (servicequotas:ListServiceQuotas)"
               if code in _DENIED else type(exc).__name__)
        return {t: found.get(t) or QuotaAnswer(t, problem=f"{why}: {exc}")
                for t in instance_types}
    return {t: found.get(t) or QuotaAnswer(
                t, problem=f"Service Quotas lists no quota named {quota_name(t)!r}")
            for t in instance_types}


def request_command(answer: QuotaAnswer, region: str | None, instances: int) -> str:
    """The AWS CLI call that asks for `instances` warm-pool instances."""
    code = answer.code or "<QuotaCode of '" + quota_name(answer.instance_type) + "'>"
    where = f" --region {region}" if region else ""
    return (f"aws service-quotas request-service-quota-increase --service-code"
            f" {QUOTA_SERVICE} --quota-code {code} --desired-value {instances}{where}")


def release_command(job_name: str, region: str | None) -> str:
    """The AWS CLI call that ends a job's Available pool, for a pool left behind."""
    where = f" --region {region}" if region else ""
    return (f"aws sagemaker update-training-job --training-job-name {job_name}"
            f" --resource-config KeepAlivePeriodInSeconds=0{where}")
