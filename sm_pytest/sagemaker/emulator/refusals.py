"""How a patched moto handler refuses a request: the strict check against the service's
model, and AWS errors answered in the protocol of the service answering.

    from sm_pytest.sagemaker.emulator import refusals

    text = refusals.refusal(host, "sagemaker", action, refusals.json_params(response.body))
    if text is not None:
        return refusals.serialized_error(response, refusals.RequestRefused(text))
    return refusals.json_error(response, "ThrottlingException", "Rate exceeded")

Shared by the handlers of :mod:`sm_pytest.sagemaker.emulator.patches` and
:mod:`sm_pytest.sagemaker.emulator.pool_handlers`; what is checked is
:mod:`sm_pytest.sagemaker.emulator.service_rules`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

from sm_pytest.sagemaker.emulator import service_rules

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.patches import RequestHost

__all__ = ["ERROR_STATUS", "RequestRefused", "json_error", "json_params", "refusal",
           "serialized_error"]

# HTTP status of injected errors (400 unless listed).
ERROR_STATUS = {
    "InternalFailure": 500,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}


class RequestRefused(ServiceException):
    """AWS's answer to a request that breaks the service model's constraints. Defined
    outside moto, so that moto serialises it in the protocol of the service answering."""

    code = "ValidationException"


def json_error(response: Any, code: str, message: str) -> Any:
    """A JSON-protocol error, as AWS sends it (botocore reads __type). Built here rather than
    by moto's serializer, which warns about any code that is not in the service's model
    (ThrottlingException is not in SageMaker's)."""
    status = ERROR_STATUS.get(code, 400)
    headers = dict(response.response_headers)
    headers.update({"status": str(status), "x-amzn-ErrorType": code,
                    "Content-Type": "application/x-amz-json-1.1"})
    body = json.dumps({"__type": code, "message": message})
    headers, body = response._enrich_response(headers, body)
    return status, headers, body


def json_params(body: Any) -> dict[str, Any] | None:
    """The parameters of a JSON-protocol request: its body (None if it is not JSON; moto
    then answers as it always has)."""
    try:
        params = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def serialized_error(response: Any, error: ServiceException) -> Any:
    """``error`` answered the way moto answers a ServiceException raised by an action."""
    status, headers, body = response.serialized(ActionResult(error))
    headers, body = response._enrich_response(headers, body)
    return status, headers, body


def refusal(host: RequestHost, service: str, operation: str, params: dict[str, Any] | None
            ) -> str | None:
    """The ValidationException message for a request that breaks the service model's
    constraints (recorded by the host), or None for a valid one."""
    if params is None:
        return None
    violations = service_rules.find_violations(service, operation, params)
    if not violations:
        return None
    text = service_rules.message(violations)
    host.record_refusal(operation, text)
    return text
