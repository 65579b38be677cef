"""The environment the SageMaker training toolkit gives a script, and the host it reads.

``toolkit_env`` mirrors ``environment.Environment`` of ``sagemaker-training`` 5.1.4 line by
line (``Environment.__init__``, ``to_env_vars``, ``mapping.to_env_vars``); the host probes
count CPUs and GPUs as ``environment.num_cpus`` / ``num_gpus`` do. The variables the
contract owns are listed here once, for the two places that keep them out of a run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_pytest.run.contract.hyperparameters import (
    JOB_NAME_PARAM,
    LOG_LEVEL_PARAM,
    PROGRAM_PARAM,
    REGION_PARAM,
    RESERVED_HYPERPARAMETERS,
    SUBMIT_DIR_PARAM,
    arg_text,
    decode_hyperparameters,
    split_hyperparameters,
    to_cmd_args,
)
from sm_pytest.run.contract.layout import ContainerLayout, ToolkitPaths

__all__ = [
    "CURRENT_HOST",
    "INSTANCE_GROUP",
    "LOCAL_EXTENSIONS",
    "NETWORK_INTERFACE",
    "OWNED_VARIABLES",
    "detect_num_cpus",
    "detect_num_gpus",
    "is_owned_variable",
    "pythonpath",
    "toolkit_env",
]

# environment.get_distribution_instance_groups_from_resource_config: any of these turns the
# current instance group into a distribution group.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)

CURRENT_HOST = "algo-1"
INSTANCE_GROUP = "homogeneousCluster"
NETWORK_INTERFACE = "eth0"

# Variables set here that neither the toolkit nor the SageMaker platform sets.
LOCAL_EXTENSIONS = frozenset({"SM_CHECKPOINT_DIR", "SAGEMAKER_BASE_DIR"})

# Variables owned by the contract: every SM_* one, and these. Two places keep them out of a
# run: ContainerTree.process_env drops inherited copies, so that a shell (or an outer job)
# that exported, say, SM_MODEL_DIR cannot leak into a run; and the SageMaker settings refuse
# them in `environment:`, where they would change what the toolkit does rather than what the
# script reads.
OWNED_PREFIX = "SM_"
OWNED_VARIABLES = frozenset(
    {
        "CURRENT_HOST",
        "PYTHONPATH",
        "SAGEMAKER_BASE_DIR",
        "SAGEMAKER_CONTAINER_LOG_LEVEL",
        "SAGEMAKER_JOB_NAME",
        "SAGEMAKER_PROGRAM",
        "SAGEMAKER_REGION",
        "SAGEMAKER_SUBMIT_DIRECTORY",
        "SAGEMAKER_TRAINING_MODULE",
        "TRAINING_JOB_NAME",
    }
)


def is_owned_variable(name: str) -> bool:
    """Whether the contract sets ``name`` (so nobody else may)."""
    return name.startswith(OWNED_PREFIX) or name in OWNED_VARIABLES


# Variables sm-pytest set in its own process for its own use (its MLflow client's retry
# caps), which the programs it starts must not inherit: a training script of the user's
# that calls MLflow itself keeps MLflow's own defaults, whichever item it is. Their names
# are kept in the environment too, under an SM_ name (owned, so never passed on itself):
# the list must outlive a reload of this module, as the variables do.
_FOR_THIS_PROCESS = "SM_PYTEST_FOR_THIS_PROCESS"


def _for_this_process() -> set[str]:
    return set(filter(None, os.environ.get(_FOR_THIS_PROCESS, "").split(",")))


def set_for_this_process(name: str, value: str) -> None:
    """Set ``name`` in os.environ unless the user has, and keep it from every run."""
    if name not in os.environ:
        os.environ[name] = value
        os.environ[_FOR_THIS_PROCESS] = ",".join(sorted(_for_this_process() | {name}))


def unset_for_this_process() -> None:
    """Take back what set_for_this_process set (at the end of the session)."""
    for name in _for_this_process():
        os.environ.pop(name, None)
    os.environ.pop(_FOR_THIS_PROCESS, None)


def inherited(name: str) -> bool:
    """Whether a run's program gets ``name`` from the environment it is started from."""
    return not is_owned_variable(name) and name not in _for_this_process()


# --- host probes ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _gpus_on_host() -> int:
    """environment.num_gpus counts the ``GPU `` lines of ``nvidia-smi --list-gpus``. Same here,
    with a timeout and every error caught; without nvidia-smi, count /dev/nvidia<N> device
    nodes. Never imports torch (slow, and not a dependency of this package)."""
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run(
                [exe, "--list-gpus"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return sum(1 for name in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", name))
    except OSError:
        return 0


def detect_num_gpus(environ: Mapping[str, str] | None = None) -> int:
    """GPUs the script can use: the host's, capped by CUDA_VISIBLE_DEVICES when it is set
    (CUDA stops at the first invalid entry, so "" or "-1" means none). A local-only rule: in
    a SageMaker container that variable is not set."""
    environ = os.environ if environ is None else environ
    count = _gpus_on_host()
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        usable = 0
        for entry in visible.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break
            usable += 1
        count = min(count, usable)
    return count


def cpu_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the
    machine has): what local hosts and xdist workers divide among them. SM_NUM_CPUS stays
    the toolkit's os.cpu_count() (detect_num_cpus)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def detect_num_cpus() -> int:
    """environment.num_cpus is multiprocessing.cpu_count(), which is os.cpu_count()."""
    return os.cpu_count() or 1


# --- the environment the toolkit computes ---------------------------------------------------


def _env_value(value: Any) -> str:
    """mapping.to_env_vars' format_value: strings raw, None "", bytes latin-1, anything else
    compact JSON with sorted keys and non-ASCII escaped."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def pythonpath(code_dir: Path, environ: Mapping[str, str]) -> str:
    # environment.write_env_vars sets PYTHONPATH to the toolkit's sys.path, in which
    # entry_point.install put the code dir first. The code dir first is what matters.
    inherited = environ.get("PYTHONPATH", "")
    return str(code_dir) + (os.pathsep + inherited if inherited else "")


def toolkit_env(
    base_dir: str | os.PathLike[str] | ContainerLayout,
    stored_hyperparameters: Mapping[str, Any],
    resource_config: Mapping[str, Any],
    input_data_config: Mapping[str, Any],
    *,
    num_cpus: int,
    num_gpus: int,
    num_neurons: int = 0,
    training_job_name: str | None = None,
) -> dict[str, str]:
    """Environment(...).to_env_vars() plus the variables Environment.__init__ exports
    (SAGEMAKER_JOB_NAME, CURRENT_HOST, SAGEMAKER_REGION), for a tree at ``base_dir`` holding
    these three config files. A base dir given as a string keeps its spelling in the paths,
    as SAGEMAKER_BASE_DIR does in the toolkit's. Mirrors environment.Environment.__init__
    line by line, for a process in which SAGEMAKER_PROGRAM, SAGEMAKER_TRAINING_MODULE and
    SM_HP_MP_PARAMETERS are unset. ``training_job_name`` is the platform's TRAINING_JOB_NAME
    (SM_TRAINING_ENV's ``job_name``; null when unset).
    """
    paths = (base_dir.toolkit_paths if isinstance(base_dir, ContainerLayout)
             else ToolkitPaths.under(base_dir))
    code_dir = paths.code_dir
    model_dir = paths.model_dir
    input_dir = paths.input_dir
    input_config_dir = paths.input_config_dir
    output_dir = paths.output_dir
    output_data_dir = paths.output_data_dir
    output_intermediate_dir = paths.output_intermediate_dir

    all_hps = decode_hyperparameters(stored_hyperparameters)
    hyperparameters, sagemaker_hps = split_hyperparameters(all_hps)
    framework_params = {k: v for k, v in sagemaker_hps.items() if k not in RESERVED_HYPERPARAMETERS}

    hosts = resource_config["hosts"]
    current_host = resource_config["current_host"]
    current_instance_type = resource_config.get("current_instance_type", "local")
    # Real SageMaker writes "current_group_name"; the toolkit's own local fallback writes
    # "current_instance_group", which __init__ ignores.
    current_instance_group = resource_config.get("current_group_name", INSTANCE_GROUP)
    network_interface_name = resource_config.get("network_interface_name", "eth0")
    topology = resource_config.get("topology", [])
    groups_config = resource_config.get("instance_groups", [])

    # Without sagemaker_region the toolkit asks boto3 for a default region; we never do.
    region = sagemaker_hps.get(REGION_PARAM) or ""

    user_entry_point = sagemaker_hps.get(PROGRAM_PARAM)
    module_name = str(sagemaker_hps.get(PROGRAM_PARAM, None))
    if module_name.endswith(".py"):  # Environment._parse_module_name
        module_name = module_name[:-3]
    module_dir = str(sagemaker_hps.get(SUBMIT_DIR_PARAM, code_dir))
    log_level = sagemaker_hps.get(LOG_LEVEL_PARAM, logging.INFO)

    current_instance_group_hosts = next(
        (g["hosts"] for g in groups_config if g["instance_group_name"] == current_instance_group),
        [],
    )
    instance_groups = [g["instance_group_name"] for g in groups_config]
    instance_groups_dict = {g["instance_group_name"]: g for g in groups_config}
    if "sagemaker_distribution_instance_groups" in framework_params:
        distribution_instance_groups = framework_params["sagemaker_distribution_instance_groups"]
    elif any(framework_params.get(flag, False) for flag in _DISTRIBUTION_FLAGS):
        distribution_instance_groups = [current_instance_group]
    else:
        distribution_instance_groups = []
    if groups_config:
        distribution_hosts = [
            h
            for g in groups_config
            if g["instance_group_name"] in distribution_instance_groups
            for h in g["hosts"]
        ]
    else:
        distribution_hosts = list(hosts)
    master_hostname = list(distribution_hosts or hosts)[0]
    channel_input_dirs = {ch: paths.channel_dir(ch) for ch in input_data_config}

    # dict(Environment): every public property, 37 of them in 5.1.4.
    training_env = {
        "additional_framework_parameters": framework_params,
        "channel_input_dirs": channel_input_dirs,
        "current_host": current_host,
        "current_instance_group": current_instance_group,
        "current_instance_group_hosts": current_instance_group_hosts,
        "current_instance_type": current_instance_type,
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": distribution_instance_groups,
        "framework_module": None,  # SAGEMAKER_TRAINING_MODULE unset
        "hosts": hosts,
        "hyperparameters": hyperparameters,
        "input_config_dir": input_config_dir,
        "input_data_config": input_data_config,
        "input_dir": input_dir,
        "instance_groups": instance_groups,
        "instance_groups_dict": instance_groups_dict,
        "is_hetero": len(instance_groups) > 1,
        "is_master": current_host == master_hostname,
        # `mp_parameters and mp_parameters != "{}"` with SM_HP_MP_PARAMETERS unset: None.
        "is_modelparallel_enabled": None,
        "is_smddpmprun_installed": shutil.which("smddpmprun") is not None,
        "is_smddprun_installed": shutil.which("smddprun") is not None,
        "job_name": training_job_name,
        "log_level": log_level,
        "master_hostname": master_hostname,
        "model_dir": model_dir,
        "module_dir": module_dir,
        "module_name": module_name,
        "network_interface_name": network_interface_name,
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": num_neurons,
        "output_data_dir": output_data_dir,
        "output_dir": output_dir,
        "output_intermediate_dir": output_intermediate_dir,
        "resource_config": resource_config,
        "topology": topology,
        "user_entry_point": user_entry_point,
    }

    # Environment.to_env_vars, in its order (it matters only when two names collide).
    items: dict[str, Any] = {
        "hosts": hosts,
        "network_interface_name": network_interface_name,
        "hps": hyperparameters,
        "user_entry_point": user_entry_point,
        "framework_params": framework_params,
        "resource_config": resource_config,
        "input_data_config": input_data_config,
        "output_data_dir": output_data_dir,
        "channels": sorted(channel_input_dirs),
        "current_host": current_host,
        "current_instance_type": current_instance_type,
        "current_instance_group": current_instance_group,
        "current_instance_group_hosts": current_instance_group_hosts,
        "instance_groups": instance_groups,
        "instance_groups_dict": instance_groups_dict,
        "distribution_instance_groups": distribution_instance_groups,
        "is_hetero": training_env["is_hetero"],
        "module_name": module_name,
        "log_level": log_level,
        "framework_module": None,
        "input_dir": input_dir,
        "input_config_dir": input_config_dir,
        "output_dir": output_dir,
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": num_neurons,
        "model_dir": model_dir,
        "module_dir": module_dir,
        "training_env": training_env,
        "user_args": to_cmd_args(hyperparameters),
        "output_intermediate_dir": output_intermediate_dir,
    }
    if topology:
        items["topology"] = topology
    for name, path in channel_input_dirs.items():
        items[f"channel_{name}"] = path
    for key, value in hyperparameters.items():
        items[f"hp_{key}"] = value

    env = {(f"SM_{str(k).upper()}" if k else ""): _env_value(v) for k, v in items.items()}
    # Exported by Environment.__init__ into the toolkit's own environment, which the
    # script inherits.
    env["SAGEMAKER_JOB_NAME"] = arg_text(sagemaker_hps.get(JOB_NAME_PARAM, ""))
    env["CURRENT_HOST"] = current_host
    env["SAGEMAKER_REGION"] = arg_text(region)
    return env
