"""The emulator's testing knobs, set through the environment for --sm-emulate runs started
as a whole pytest session (a test cannot reach that session's Emulator object)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from sm_pytest.sagemaker.settings import SettingsError


def from_environment(environ) -> list[Callable]:
    """Testing knobs for --sm-emulate runs started as a whole pytest session, read and
    checked before the emulator starts (a bad value is a SettingsError naming the variable):
    SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS=<job-name prefix>[,...] interrupts those spot jobs
    once; SM_PYTEST_EMULATE_THROTTLE=N makes the first N CreateTrainingJob calls throttled
    (_CODE / _MESSAGE: another AWS error than throttling, e.g. ResourceLimitExceeded);
    SM_PYTEST_EMULATE_NO_SPOT_CAPACITY=<job-name prefix>[,...] gives those spot jobs no
    capacity; SM_PYTEST_EMULATE_LOG_PAGES=<page size>,<empty pages> pages GetLogEvents
    (Emulator.paginate_logs); SM_PYTEST_EMULATE_EXPERIMENT_RUNS=<SageMaker
    experiment>=<runs>[,...] records runs an earlier session left there, each with its
    job's own trial component; SM_PYTEST_EMULATE_WARM_POOL_QUOTA=<instance type>=<n>[,...]
    sets warm-pool quotas (Emulator.quota); SM_PYTEST_EMULATE_START_SECONDS=<cold>,<warm>
    makes jobs wait that long in Starting (Emulator.start_latency);
    SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS=1 refuses every Service Quotas call
    (Emulator.deny_service_quotas)."""
    def listed(name: str) -> list[str]:
        return [part.strip() for part in environ.get(name, "").split(",") if part.strip()]

    def number(name: str, text: str, shape: str, low: int = 0) -> int:
        if not text.strip().isdecimal() or int(text) < low:
            raise SettingsError(
                f"{name}={environ.get(name)!r}: {text.strip()!r} is not a whole number of"
                f" at least {low}; the variable takes {shape}")
        return int(text)

    knobs: list[Callable] = []
    for prefix in listed("SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS"):
        knobs.append(lambda emu, prefix=prefix: emu.interrupt_spot(prefix,
                                                                   after_checkpoint=True))
    throttled = environ.get("SM_PYTEST_EMULATE_THROTTLE", "")
    if throttled:
        times = number("SM_PYTEST_EMULATE_THROTTLE", throttled, "N, e.g. 2")
        code = environ.get("SM_PYTEST_EMULATE_THROTTLE_CODE", "ThrottlingException")
        message = environ.get("SM_PYTEST_EMULATE_THROTTLE_MESSAGE")
        if times:
            knobs.append(lambda emu: emu.throttle("CreateTrainingJob", times=times, code=code,
                                                  message=message))
    for prefix in listed("SM_PYTEST_EMULATE_NO_SPOT_CAPACITY"):
        knobs.append(lambda emu, prefix=prefix: emu.withhold_spot_capacity(prefix))
    paging = environ.get("SM_PYTEST_EMULATE_LOG_PAGES", "")
    if paging:
        shape = "<page size>,<empty pages>, e.g. 2,3"
        size, _, empty = paging.partition(",")
        size = number("SM_PYTEST_EMULATE_LOG_PAGES", size, shape, low=1)
        empty = number("SM_PYTEST_EMULATE_LOG_PAGES", empty or "0", shape)
        knobs.append(lambda emu: emu.paginate_logs(page_size=size, empty_pages=empty))
    variable = "SM_PYTEST_EMULATE_EXPERIMENT_RUNS"
    for pair in listed(variable):
        name, _, count = (part.strip() for part in pair.partition("="))
        shape = "<SageMaker experiment>=<runs>[,...], e.g. lr-sweep=30"
        if not name:
            raise SettingsError(f"{variable}={environ[variable]!r}: {pair!r} names"
                                            f" no experiment; the variable takes {shape}")
        runs = number(variable, count, shape)
        knobs.append(lambda emu, name=name, runs=runs: _earlier_runs(emu, name, runs))
    knobs += _warm_pool_knobs(environ, listed, number)
    return knobs


# An instance type as SageMaker spells it (ml.<family>.<size>); the emulator's quota list
# holds only the model's types, but checking the spelling here keeps botocore off this path.
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9-]+")


def _warm_pool_knobs(environ, listed, number) -> list[Callable]:
    knobs: list[Callable] = []
    variable = "SM_PYTEST_EMULATE_WARM_POOL_QUOTA"
    shape = "<instance type>=<instances>[,...], e.g. ml.m5.xlarge=2"
    for pair in listed(variable):
        instance_type, _, count = (part.strip() for part in pair.partition("="))
        if not _INSTANCE_TYPE.fullmatch(instance_type):
            raise SettingsError(f"{variable}={environ[variable]!r}: {instance_type!r} is not an "
                                f"instance type like ml.m5.xlarge; the variable takes {shape}")
        instances = number(variable, count, shape)
        knobs.append(lambda emu, t=instance_type, n=instances: emu.quota(t, n))
    variable = "SM_PYTEST_EMULATE_START_SECONDS"
    text = environ.get(variable, "")
    if text.strip():
        parts = [part.strip() for part in text.split(",")]
        seconds = [_seconds(part) for part in parts]
        if len(parts) != 2 or None in seconds:
            raise SettingsError(
                f"{variable}={text!r}: give two decimal numbers of seconds, 0 or more, the "
                "cold start then the warm start, e.g. 2.0,0.2")
        cold, warm = seconds
        knobs.append(lambda emu: emu.start_latency(cold, warm))
    variable = "SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS"
    flag = environ.get(variable, "").strip()
    if flag not in ("", "0", "1"):
        raise SettingsError(f"{variable}={flag!r}: set it to 1 to deny every Service Quotas "
                            "call (AccessDeniedException), or to 0 or nothing not to")
    if flag == "1":
        knobs.append(lambda emu: emu.deny_service_quotas())
    return knobs


def _seconds(text: str) -> float | None:
    """A decimal number of seconds, 0 or more (None when it is not one)."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _earlier_runs(emulator, experiment: str, count: int) -> None:
    from sm_pytest.sagemaker.emulator.trial_components import record_earlier_runs

    record_earlier_runs(emulator.account_id, emulator.region, experiment, count)
