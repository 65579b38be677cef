"""The emulator's testing knobs, set through the environment for --sm-emulate runs started
as a whole pytest session (a test cannot reach that session's Emulator object)."""

from __future__ import annotations

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
    job's own trial component."""
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
    return knobs


def _earlier_runs(emulator, experiment: str, count: int) -> None:
    from sm_pytest.sagemaker.emulator.trial_components import record_earlier_runs

    record_earlier_runs(emulator.account_id, emulator.region, experiment, count)
