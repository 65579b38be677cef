"""The strict SageMaker emulator: moto, checked against the service model, running real
training jobs on this machine.

    from sm_pytest.sagemaker.emulator import Emulator

The names here are looked up on first use (PEP 562), not at import: the service imports
moto and boto3 and checks moto's version, and the SageMaker session imports
:mod:`~sm_pytest.sagemaker.emulator.knobs` before it knows whether it will emulate at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sm_pytest.sagemaker.emulator.service import Emulator, EmulatorError

__all__ = ["Emulator", "EmulatorError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sm_pytest.sagemaker.emulator import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
