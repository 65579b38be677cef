"""The strict SageMaker emulator: moto, checked against the service model, running real
training jobs on this machine.

    from sm_pytest.sagemaker.emulator import Emulator
"""

from sm_pytest.sagemaker.emulator.service import Emulator, EmulatorError

__all__ = ["Emulator", "EmulatorError"]
