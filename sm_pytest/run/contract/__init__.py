"""The SageMaker training-container contract, reproduced in a per-run directory.

A script written for SageMaker script mode reads its world from the container: the
hyperparameters arrive as ``--key value`` arguments, paths and settings arrive as ``SM_*``
environment variables, data sits in ``/opt/ml/input/data/<channel>``, and the model goes to
``/opt/ml/model``. This package lays the same tree out under an ordinary directory (no Docker,
no root paths) and computes the arguments and variables the SageMaker training toolkit would
give the script for it, so the same ``train.py`` runs locally unchanged.

Ground truth is the toolkit itself, ``sagemaker-training`` 5.1.4 (the package that runs user
scripts inside the framework containers). Comments cite its modules as ``environment.py``,
``mapping.py``, ``params.py``, ``entry_point.py``, ``process.py`` and ``trainer.py``. The
conformance test (``tests/test_contract.py``) runs the toolkit against the same config files
and compares every variable and argument with what is computed here.

One job per module: ``hyperparameters`` (encoding, decoding, the script's arguments),
``environment`` (the ``SM_*`` variables, the host probes, the variables the contract owns),
``layout`` (where everything sits under a run directory) and ``tree`` (preparing a run
directory and recording how the script ended). Importers use this package's names.

Pure standard library on purpose: a local run must never import boto3, sagemaker or torch.

Where we differ from the toolkit, on purpose:

* ``output/data``, ``output/intermediate``, every channel directory and ``checkpoints`` are
  created. The toolkit points ``SM_OUTPUT_DATA_DIR`` and ``SM_OUTPUT_INTERMEDIATE_DIR`` at
  directories it never creates; creating them is harmless and friendlier (and
  ``intermediate_output.start_sync`` treats an existing intermediate dir as "the platform
  syncs it", so nothing changes there).
* Extra variables (``LOCAL_EXTENSIONS``): ``SM_CHECKPOINT_DIR`` says where
  ``/opt/ml/checkpoints`` is locally; ``SAGEMAKER_BASE_DIR`` makes a script that itself uses
  ``sagemaker_training.environment.Environment()`` read this tree instead of ``/opt/ml``.
* Nothing is installed: the toolkit pip-installs ``requirements.txt`` (or the package, when
  ``setup.py`` is present) into the container; locally the current environment is used.
* Host probes: ``SM_NUM_GPUS`` honours ``CUDA_VISIBLE_DEVICES`` (the toolkit counts every GPU
  ``nvidia-smi`` lists; in a SageMaker container that variable is never set), and
  ``SM_NUM_NEURONS`` is always 0.
* Several hosts (``hosts``): one tree per host, each with its ``current_host``. The PyTorch
  image's launcher variables are added when a rendezvous is given, with MASTER_ADDR
  127.0.0.1, a free port and the loopback interface (``algo-N`` does not resolve here and
  7777 may be taken); see ``hosts``.
* Runners: the single-process one, and torchrun for ``torch_distributed``. No MPI or
  smdistributed launchers, and no framework module (``SM_FRAMEWORK_MODULE`` is empty;
  the PyTorch image sets ``SAGEMAKER_TRAINING_MODULE`` to its own launcher, which ends
  in the same call).
"""

from __future__ import annotations

from sm_pytest.run.contract.environment import (
    CURRENT_HOST,
    INSTANCE_GROUP,
    LOCAL_EXTENSIONS,
    NETWORK_INTERFACE,
    OWNED_VARIABLES,
    cpu_cores,
    detect_num_cpus,
    detect_num_gpus,
    is_owned_variable,
    toolkit_env,
)
from sm_pytest.run.contract.hosts import (
    DISTRIBUTIONS,
    INSTANCE_TYPE_PARAM,
    LOOPBACK_INTERFACE,
    TORCH_DISTRIBUTED,
    TORCH_DISTRIBUTED_PARAM,
    Rendezvous,
    distribution_hyperparameters,
    host_names,
    launcher_env,
    torchrun_command,
    uses_torch_distributed,
)
from sm_pytest.run.contract.hyperparameters import (
    JOB_NAME_PARAM,
    LOG_LEVEL_PARAM,
    PROGRAM_PARAM,
    REGION_PARAM,
    RESERVED_HYPERPARAMETERS,
    SAGEMAKER_PREFIX,
    SCRIPT_MODE_PARAMS,
    SUBMIT_DIR_PARAM,
    decode_hyperparameters,
    encode_hyperparameters,
    hyperparameters_to_argv,
)
from sm_pytest.run.contract.layout import ContainerLayout, ToolkitPaths
from sm_pytest.run.contract.tree import (
    CHANNEL_NAME,
    ContainerJob,
    ContainerTree,
    prepare_container_tree,
    toolkit_failure_message,
)

__all__ = [
    "CHANNEL_NAME",
    "CURRENT_HOST",
    "DISTRIBUTIONS",
    "INSTANCE_TYPE_PARAM",
    "LOOPBACK_INTERFACE",
    "TORCH_DISTRIBUTED",
    "TORCH_DISTRIBUTED_PARAM",
    "Rendezvous",
    "distribution_hyperparameters",
    "host_names",
    "launcher_env",
    "torchrun_command",
    "uses_torch_distributed",
    "INSTANCE_GROUP",
    "JOB_NAME_PARAM",
    "LOCAL_EXTENSIONS",
    "LOG_LEVEL_PARAM",
    "NETWORK_INTERFACE",
    "OWNED_VARIABLES",
    "PROGRAM_PARAM",
    "REGION_PARAM",
    "RESERVED_HYPERPARAMETERS",
    "SAGEMAKER_PREFIX",
    "SCRIPT_MODE_PARAMS",
    "SUBMIT_DIR_PARAM",
    "ContainerJob",
    "ContainerLayout",
    "ContainerTree",
    "ToolkitPaths",
    "cpu_cores",
    "decode_hyperparameters",
    "detect_num_cpus",
    "detect_num_gpus",
    "encode_hyperparameters",
    "hyperparameters_to_argv",
    "is_owned_variable",
    "prepare_container_tree",
    "toolkit_env",
    "toolkit_failure_message",
]
