"""The emulator's Service Quotas answers for service code ``sagemaker``: one warm-pool quota
per training instance type.

    from sm_pytest.sagemaker.emulator import service_quotas

    service_quotas.list_quotas({"ml.m5.xlarge": 2}, region, account, max_results=100)
    service_quotas.get_quota("L-0BEF44E8", {"ml.m5.xlarge": 2}, region, account)

moto 5.2.5 knows service code ``vpc`` only (and has no ListServiceQuotas at all). For
``sagemaker`` the emulator answers ListServiceQuotas, ListAWSDefaultServiceQuotas,
GetServiceQuota and GetAWSDefaultServiceQuota from here; other codes stay moto's.

What is listed: for every instance type of the SageMaker model's ``TrainingInstanceType``
enum (botocore), the quota named exactly "<instance type> for training warm pool usage",
the name the SageMaker developer guide gives ("Managed Warm Pools": request a warm-pool
quota increase). Its value is the emulated quota (``Emulator.quota``, default 0 as on AWS)
for the applied quotas, 0 for the AWS defaults. The other SageMaker quotas are not listed.

Quota codes: ``L-0BEF44E8`` for ml.m5.xlarge, the one real code we know; every other type
gets a made-up, deterministic ``L-`` + 8 upper-case hex digits of the SHA-256 of its quota
name. These are NOT AWS's codes: code that needs a quota's code must look it up by name, as
sm_pytest does.

Standard library and botocore only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SERVICE_CODE",
    "NoSuchQuota",
    "BadPageToken",
    "denial_message",
    "get_quota",
    "instance_types",
    "list_quotas",
    "quota_code",
    "quota_name",
]

SERVICE_CODE = "sagemaker"
SERVICE_NAME = "Amazon SageMaker"
DEFAULT_PAGE = 100  # MaxResults when the request sends none
# The only quota code we know to be AWS's own (the SageMaker developer guide's example).
_KNOWN_CODES = {"ml.m5.xlarge for training warm pool usage": "L-0BEF44E8"}
# NextToken is base64 of this prefix and the offset: the model's pattern for it is base64's
# alphabet (^[a-zA-Z0-9/+]*={0,2}$), which a client checks before sending it back.
_TOKEN_PREFIX = "sagemaker-warm-pool-quotas:"


class NoSuchQuota(LookupError):
    """GetServiceQuota of a code that the service code does not have."""

    code = "NoSuchResourceException"


class BadPageToken(ValueError):
    """A NextToken that no listing handed out."""

    code = "InvalidPaginationTokenException"


@functools.cache
def instance_types() -> tuple[str, ...]:
    """The training instance types of the SageMaker model, in the model's order."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for("TrainingInstanceType").enum)


def quota_name(instance_type: str) -> str:
    return f"{instance_type} for training warm pool usage"


def quota_code(instance_type: str) -> str:
    """L-0BEF44E8 for ml.m5.xlarge; a made-up deterministic code for the others."""
    name = quota_name(instance_type)
    known = _KNOWN_CODES.get(name)
    if known is not None:
        return known
    return "L-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8].upper()


def _quota(instance_type: str, value: float, region: str, account: str) -> dict[str, Any]:
    code = quota_code(instance_type)
    return {
        "ServiceCode": SERVICE_CODE,
        "ServiceName": SERVICE_NAME,
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:{SERVICE_CODE}/{code}",
        "QuotaCode": code,
        "QuotaName": quota_name(instance_type),
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def _all(values: Mapping[str, float], region: str, account: str) -> list[dict[str, Any]]:
    return [_quota(t, values.get(t, 0.0), region, account) for t in instance_types()]


def list_quotas(values: Mapping[str, float], region: str, account: str, *,
                max_results: int | None = None, next_token: str | None = None,
                quota_code_filter: str | None = None) -> dict[str, Any]:
    """One page of ListServiceQuotas (``values``: instance type -> quota; pass {} for
    ListAWSDefaultServiceQuotas): at most ``max_results`` (default 100) quotas, with a
    NextToken while more follow. :class:`BadPageToken` for a token not handed out here."""
    quotas = _all(values, region, account)
    if quota_code_filter:
        quotas = [q for q in quotas if q["QuotaCode"] == quota_code_filter]
    start = _offset(next_token, len(quotas)) if next_token else 0
    size = max_results or DEFAULT_PAGE
    page: dict[str, Any] = {"Quotas": quotas[start:start + size]}
    if start + size < len(quotas):
        page["NextToken"] = base64.b64encode(
            f"{_TOKEN_PREFIX}{start + size}".encode("ascii")).decode("ascii")
    return page


def _offset(token: str, total: int) -> int:
    """Where a NextToken handed out by :func:`list_quotas` resumes."""
    try:
        text = base64.b64decode(token, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    offset = text.removeprefix(_TOKEN_PREFIX)
    if not text.startswith(_TOKEN_PREFIX) or not offset.isdecimal() or int(offset) > total:
        raise BadPageToken("Invalid pagination token: it was not returned by a previous "
                           "request with the same parameters.")
    return int(offset)


def get_quota(code: str, values: Mapping[str, float], region: str, account: str
              ) -> dict[str, Any]:
    """GetServiceQuota's answer ({} of values: GetAWSDefaultServiceQuota's)."""
    for quota in _all(values, region, account):
        if quota["QuotaCode"] == code:
            return {"Quota": quota}
    raise NoSuchQuota(f"The request failed because the specified service quota {code} does "
                      f"not exist for service code {SERVICE_CODE}.")


def denial_message(operation: str, account: str) -> str:
    """AWS's AccessDenied wording for a caller whose policy lacks servicequotas:<operation>."""
    action = f"servicequotas:{operation}"
    return (f"User: arn:aws:sts::{account}:assumed-role/sm-pytest-emulated-role/session is not "
            f"authorized to perform: {action} because no identity-based policy allows the "
            f"{action} action")
