"""The patched moto handlers of warm pools and Service Quotas, registered by patches.py.

    from sm_pytest.sagemaker.emulator import pool_handlers

    pool_handlers.training_job_handlers(active, original)   # SageMakerResponse methods
    pool_handlers.service_quotas_handlers(active, original) # ServiceQuotasResponse methods

``active()`` is the RequestHost the handlers answer to (None: moto's own behaviour), and
``original(name, cls)`` the method moto had before patches.install() replaced it.

* ``SageMakerResponse.update_training_job``: moto has none. The emulator answers
  ResourceConfig.KeepAlivePeriodInSeconds (ends or extends a warm pool,
  :mod:`sm_pytest.sagemaker.emulator.warm_pools`); ProfilerConfig, ProfilerRuleConfigurations
  and RemoteDebugConfig are checked (by the strict call_action) and accepted, and change
  nothing.
* ``SageMakerResponse.list_training_jobs``: moto's, but read under the emulator's lock with
  every keep-alive job's WarmPoolStatus brought up to date first. The summaries carry
  WarmPoolStatus, and WarmPoolStatusEquals filters by it (moto ignores it); with that filter
  the emulator pages the filtered list itself (moto pages before it filters).
* Service Quotas (``ServiceQuotasResponse``): moto knows service code ``vpc`` only and has
  no ListServiceQuotas. For ``sagemaker``, ListServiceQuotas, ListAWSDefaultServiceQuotas,
  GetServiceQuota and GetAWSDefaultServiceQuota list the warm-pool quotas
  (:mod:`sm_pytest.sagemaker.emulator.service_quotas`); other codes stay moto's. Its
  ``call_action`` is strict like the others, and refuses every call after
  ``Emulator.deny_service_quotas``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeTrainingJob
from moto.sagemaker.responses import SageMakerResponse
from moto.servicequotas.responses import ServiceQuotasResponse

from sm_pytest.sagemaker.emulator import refusals, service_quotas

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.patches import RequestHost

__all__ = ["service_quotas_handlers", "training_job_handlers"]

Active = Callable[[], "RequestHost | None"]
Original = Callable[[str, type], Any]


def training_job_handlers(active: Active, original: Original) -> dict[str, Callable[..., Any]]:
    """The patched SageMakerResponse methods of warm pools, by name."""

    def list_training_jobs(self: SageMakerResponse) -> Any:
        emu = active()
        if emu is None:
            return original("list_training_jobs", SageMakerResponse)(self)
        wanted = self._get_param("WarmPoolStatusEquals")
        backend = self.sagemaker_backend
        with emu.lock:
            emu.sync_warm_pools()
            if wanted is None:
                result = copy.deepcopy(
                    original("list_training_jobs", SageMakerResponse)(self).result)
            else:
                result = _list_by_warm_pool_status(self, wanted)
            for summary in result.get("TrainingJobSummaries") or []:
                stored = backend.training_jobs.get(summary["TrainingJobName"])
                pool = getattr(stored, "warm_pool_status", None)
                if pool is not None:
                    summary["WarmPoolStatus"] = copy.deepcopy(pool)
        return ActionResult(result)

    def update_training_job(self: SageMakerResponse) -> Any:
        """UpdateTrainingJob (moto has none), already checked against the service model by
        call_action: a keep-alive change ends or extends the job's warm pool."""
        emu = active()
        if emu is None:
            raise NotImplementedError(
                "The update_training_job action has not been implemented")
        name = self._get_param("TrainingJobName")
        resources = self._get_param("ResourceConfig")
        backend = self.sagemaker_backend
        with emu.lock:
            stored = backend.training_jobs.get(name)
            if stored is None:
                arn = FakeTrainingJob.arn_formatter(name, backend.account_id,
                                                    backend.region_name)
                raise ValidationError(message=f"Could not find training job '{arn}'.")
            if resources is not None:
                keep_alive = int(resources["KeepAlivePeriodInSeconds"])
                try:
                    emu.update_warm_pool(name, keep_alive)
                except ValueError as exc:
                    raise ValidationError(message=str(exc)) from exc
                # DescribeTrainingJob shows the new period (copy, then rebind: see jobs.py).
                stored.resource_config = {**(stored.resource_config or {}),
                                          "KeepAlivePeriodInSeconds": keep_alive}
                stored.last_modified_time = utcnow()
                emu.sync_warm_pools()
            return ActionResult({"TrainingJobArn": stored.arn})

    return {"list_training_jobs": list_training_jobs,
            "update_training_job": update_training_job}


def _list_by_warm_pool_status(self: SageMakerResponse, wanted: str) -> dict[str, Any]:
    """ListTrainingJobs with WarmPoolStatusEquals: moto's other filters over every job, then
    the warm-pool filter, then the page (moto pages before it filters, so a filter of its
    own would leave pages short and tokens wrong)."""
    backend = self.sagemaker_backend
    found = backend.list_training_jobs(
        next_token=None, max_results=None,
        creation_time_after=self._get_param("CreationTimeAfter"),
        creation_time_before=self._get_param("CreationTimeBefore"),
        last_modified_time_after=self._get_param("LastModifiedTimeAfter"),
        last_modified_time_before=self._get_param("LastModifiedTimeBefore"),
        name_contains=self._get_param("NameContains"),
        status_equals=self._get_param("StatusEquals"),
    )["TrainingJobSummaries"]
    found = [s for s in found
             if (getattr(backend.training_jobs.get(s["TrainingJobName"]), "warm_pool_status",
                         None) or {}).get("Status") == wanted]
    token = self._get_param("NextToken")
    start = 0
    if token:
        if not token.isdecimal() or int(token) > len(found):
            raise ValidationError(message='Invalid pagination token because "{0}".')
        start = int(token)
    size = self._get_int_param("MaxResults") or 100
    page: dict[str, Any] = {"TrainingJobSummaries": copy.deepcopy(found[start:start + size])}
    if start + size < len(found):
        page["NextToken"] = str(start + size)
    return page


class _QuotaError(ServiceException):
    """A Service Quotas error of the emulator's, ``_QuotaError(code, message)``: defined
    outside moto, like refusals.RequestRefused, so that moto serialises it in the protocol
    of the service answering (it looks an error's service up by the module defining it)."""


def service_quotas_handlers(active: Active, original: Original
                            ) -> dict[tuple[type, str], Callable[..., Any]]:
    """The patched ServiceQuotasResponse methods, by (class, name)."""

    def call_action(self: ServiceQuotasResponse) -> Any:
        """Service Quotas' call_action: denied after Emulator.deny_service_quotas, then the
        strict check; then the handlers (the ones below for service code sagemaker)."""
        emu = active()
        if emu is not None:
            action = self._get_action()
            denial = emu.service_quotas_denial(action)
            if denial is not None:
                return refusals.json_error(self, *denial)
            refusal = refusals.refusal(emu, "service-quotas", action,
                                       refusals.json_params(self.body))
            if refusal is not None:
                return refusals.serialized_error(self, refusals.RequestRefused(refusal))
        return original("call_action", ServiceQuotasResponse)(self)

    def quotas_handler(name: str, defaults: bool, single: bool) -> Any:
        """ServiceQuotasResponse.<name>: the emulator's answer for service code sagemaker,
        moto's (if it has one) for any other."""
        def handler(self: ServiceQuotasResponse) -> Any:
            emu = active()
            params = refusals.json_params(self.body) or {}
            if emu is None or params.get("ServiceCode") != service_quotas.SERVICE_CODE:
                try:
                    moto_handler = original(name, ServiceQuotasResponse)
                except KeyError:  # not installed
                    moto_handler = None
                if moto_handler is None:
                    raise NotImplementedError(f"The {name} action has not been implemented")
                return moto_handler(self)
            values = {} if defaults else emu.warm_pool_quotas()
            try:
                if single:
                    answer = service_quotas.get_quota(params.get("QuotaCode", ""), values,
                                                      self.region, self.current_account)
                else:
                    answer = service_quotas.list_quotas(
                        values, self.region, self.current_account,
                        max_results=params.get("MaxResults"),
                        next_token=params.get("NextToken"),
                        quota_code_filter=params.get("QuotaCode"))
            except (service_quotas.NoSuchQuota, service_quotas.BadPageToken) as exc:
                raise _QuotaError(exc.code, str(exc)) from exc
            return ActionResult(answer)

        handler.__name__ = f"_sagemaker_{name}"
        return handler

    return {
        (ServiceQuotasResponse, "call_action"): call_action,
        (ServiceQuotasResponse, "list_service_quotas"): quotas_handler(
            "list_service_quotas", defaults=False, single=False),
        (ServiceQuotasResponse, "list_aws_default_service_quotas"): quotas_handler(
            "list_aws_default_service_quotas", defaults=True, single=False),
        (ServiceQuotasResponse, "get_service_quota"): quotas_handler(
            "get_service_quota", defaults=False, single=True),
        (ServiceQuotasResponse, "get_aws_default_service_quota"): quotas_handler(
            "get_aws_default_service_quota", defaults=True, single=True),
    }
