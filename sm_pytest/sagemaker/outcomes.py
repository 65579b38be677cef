"""What SageMaker's answers mean for the person who ran the tests: a CreateTrainingJob error
that no retry can mend, and the reasons of jobs that SageMaker itself stopped, with the
figures and what to do. Standard library only; the caller passes the error or the
DescribeTrainingJob response."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

QUOTAS_PAGE = "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas"

# AWS: "The account-level service limit 'ml.m5.xlarge for spot training job usage' is
# 0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances."
_ZERO_QUOTA = re.compile(r"service limit '(?P<quota>[^']+)' is 0 Instances?\b")


def zero_quota(message: str) -> str | None:
    """The quota named by a ResourceLimitExceeded message when that quota is 0 instances:
    waiting frees nothing, so the call must not be retried. None for any other message
    (a quota in use, which frees up when other jobs end)."""
    match = _ZERO_QUOTA.search(message or "")
    return match["quota"] if match else None


def zero_quota_reason(quota: str, *, spot: bool, spot_from: str = "--spot") -> str:
    """Why CreateTrainingJob was refused and is not retried, and what to do. `spot_from`
    says where spot was turned on (SageMakerSettings.sources): the command line's --spot,
    or a file and line, which is where the user turns it off."""
    if not spot:
        other = ""
    elif spot_from == "--spot":
        other = "run without --spot (on-demand has its own quota), or "
    else:
        other = f"turn spot off where it is set ({spot_from}; on-demand has its own quota), or "
    return (f"CreateTrainingJob failed and was not retried: the account's SageMaker quota"
            f" '{quota}' is 0 instances, so no such job can start until it is raised."
            f" Request an increase for '{quota}' at {QUOTAS_PAGE}, or {other}choose an"
            " instance_type whose quota is above 0.")


def max_runtime_reason(describe: dict[str, Any]) -> str:
    limit = describe.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    return f"the job exceeded MaxRuntimeInSeconds ({limit} s) and SageMaker stopped it"


def max_wait_reason(describe: dict[str, Any]) -> str:
    """A managed spot job that SageMaker stopped with MaxWaitTimeExceeded: either no spot
    capacity came in time, or waits and interruptions left too little of max_wait."""
    stopping = describe.get("StoppingCondition", {})
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    max_run = stopping.get("MaxRuntimeInSeconds")
    instance = describe.get("ResourceConfig", {}).get("InstanceType", "the instance type")
    trained = describe.get("TrainingTimeInSeconds") or 0
    waited = _elapsed(describe.get("CreationTime"),
                      describe.get("TrainingEndTime") or describe.get("LastModifiedTime"))
    figures = (f"MaxWaitTimeInSeconds {max_wait} s, MaxRuntimeInSeconds {max_run} s"
               + (f", {waited:.0f} s since the job was created" if waited is not None else "")
               + f", {trained} s of training")
    if not describe.get("TrainingStartTime") or not trained:
        what = (f"no {instance} spot capacity came within max_wait, so the job never"
                " started training")
    else:
        what = ("the spot job did not finish within max_wait (waiting for capacity and"
                " spot interruptions count against it)")
    return (f"{what}; SageMaker stopped it ({figures}). Give a larger max_wait, another"
            " instance_type, or run on-demand (without --spot).")


def _elapsed(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, _seconds(end) - _seconds(start))


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
