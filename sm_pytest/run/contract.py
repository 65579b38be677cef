"""The SageMaker training-container contract, reproduced in a per-run directory.

A script written for SageMaker script mode reads its world from the container: the
hyperparameters arrive as ``--key value`` arguments, paths and settings arrive as ``SM_*``
environment variables, data sits in ``/opt/ml/input/data/<channel>``, and the model goes to
``/opt/ml/model``. This module lays the same tree out under an ordinary directory (no Docker,
no root paths) and computes the arguments and variables the SageMaker training toolkit would
give the script for it, so the same ``train.py`` runs locally unchanged.

Ground truth is the toolkit itself, ``sagemaker-training`` 5.1.4 (the package that runs user
scripts inside the framework containers). Comments cite its modules as ``environment.py``,
``mapping.py``, ``params.py``, ``entry_point.py``, ``process.py`` and ``trainer.py``. The
conformance test (``tests/test_contract.py``) runs the toolkit against the same config files
and compares every variable and argument with what is computed here.

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
* Only the single-process runner is reproduced: no MPI, torch.distributed or smdistributed
  launchers, and no framework module (``SM_FRAMEWORK_MODULE`` is empty; the PyTorch image
  sets ``SAGEMAKER_TRAINING_MODULE`` to its own launcher, which ends in the same call).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LOCAL_EXTENSIONS",
    "ContainerJob",
    "ContainerTree",
    "decode_hyperparameters",
    "detect_num_cpus",
    "detect_num_gpus",
    "encode_hyperparameters",
    "hyperparameters_to_argv",
    "prepare_container_tree",
    "toolkit_env",
    "toolkit_failure_message",
]

# --- constants copied from the toolkit (params.py, environment.py) -----------------------

SAGEMAKER_PREFIX = "sagemaker_"
PROGRAM_PARAM = "sagemaker_program"
SUBMIT_DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
REGION_PARAM = "sagemaker_region"

# params.SAGEMAKER_HYPERPARAMETERS: split off with every other ``sagemaker_*`` key, and
# (unlike the other ``sagemaker_*`` keys) kept out of SM_FRAMEWORK_PARAMS too. Note the two
# that do not start with ``sagemaker_``: they are reserved all the same.
RESERVED_HYPERPARAMETERS = frozenset(
    {
        PROGRAM_PARAM,
        SUBMIT_DIR_PARAM,
        "sagemaker_enable_cloudwatch_metrics",
        REGION_PARAM,
        LOG_LEVEL_PARAM,
        JOB_NAME_PARAM,
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)
# Keys this module writes itself from ContainerJob fields (the script-mode hyperparameters);
# a user value would silently replace (or be replaced by) ours, so it is refused instead.
SCRIPT_MODE_PARAMS = frozenset(
    {PROGRAM_PARAM, SUBMIT_DIR_PARAM, LOG_LEVEL_PARAM, JOB_NAME_PARAM, REGION_PARAM}
)
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

# Variables owned by the contract: inherited copies are dropped by ContainerTree.process_env
# so that a shell (or an outer job) that exported, say, SM_MODEL_DIR cannot leak into a run.
_OWNED_VARIABLES = frozenset(
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

# process.validate_entry_point: the toolkit refuses any other program name (ClientError).
_SAFE_ENTRY_POINT = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")
# API_Channel.ChannelName.
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")

SNAPSHOT_IGNORE = ("__pycache__", ".git", "*.pyc")


# --- the job and the tree -------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerJob:
    """What SageMaker would be asked to run: CreateTrainingJob, reduced to what the container
    sees.

    ``hyperparameters`` are the user's, with Python values; they are JSON-encoded the way the
    SageMaker Python SDK does for script mode. ``channels`` map a channel name to a local
    directory (or a single file). ``region`` "" means "none" (SAGEMAKER_REGION is then "").
    """

    job_name: str
    program: str
    source_dir: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    channels: Mapping[str, Path] = field(default_factory=dict)
    instance_type: str = "local"
    region: str = ""
    log_level: int = logging.INFO  # the SDK's container_log_level


@dataclass(frozen=True)
class ContainerTree:
    """A prepared run directory: the /opt/ml layout under ``root``, plus how to start the
    program in it.

    Run ``command`` with ``cwd=code_dir`` (the toolkit runs it from the code dir, with a
    relative program name) and an environment of ``process_env()`` (or the inherited
    environment updated with ``env``).
    """

    root: Path
    code_dir: Path
    model_dir: Path
    input_dir: Path
    input_config_dir: Path
    input_data_dir: Path
    output_dir: Path
    output_data_dir: Path
    output_intermediate_dir: Path
    checkpoint_dir: Path
    failure_file: Path
    success_file: Path
    channel_dirs: dict[str, Path]
    env: dict[str, str]
    argv: list[str]
    command: list[str]

    @property
    def cwd(self) -> Path:
        """Where the program starts (process.ProcessRunner.run: ``cwd=environment.code_dir``)."""
        return self.code_dir

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.input_config_dir / "resourceconfig.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config_dir / "inputdataconfig.json"

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The complete environment for the program: ``base`` (default ``os.environ``) without
        any inherited ``SM_*`` or other contract-owned variable, updated with ``env``.

        The toolkit runs the script with the container's whole environment plus its own
        variables (entry_point.run -> environment.write_env_vars); PYTHONPATH is the code dir
        first, then ``base``'s own PYTHONPATH.
        """
        base = os.environ if base is None else base
        merged = {
            k: v for k, v in base.items() if not k.startswith("SM_") and k not in _OWNED_VARIABLES
        }
        merged.update(self.env)
        merged["PYTHONPATH"] = _pythonpath(self.code_dir, base)
        return merged

    def record_exit(self, returncode: int, error_message: str = "") -> Path:
        """Write ``output/success`` or ``output/failure`` as trainer.train() does after the
        script ends, and return the path written (or kept).

        Success: an empty ``success`` file (files.write_success_file). Failure: the message of
        the toolkit's ExecuteUserScriptError, but only when the script did not write its own
        ``failure`` file first (files.write_failure_file never overwrites; by the SageMaker
        convention the script's own reason wins). ``error_message`` is the captured stderr,
        empty when not captured (the generic toolkit runs with capture_error=False).
        """
        if returncode == 0:
            self.success_file.write_text("", encoding="utf-8")
            return self.success_file
        if not self.failure_file.exists():
            self.failure_file.write_text(
                toolkit_failure_message(returncode, self.command, error_message), encoding="utf-8"
            )
        return self.failure_file


def toolkit_failure_message(returncode: int, command: list[str], error_message: str = "") -> str:
    """errors._CalledProcessError.__str__ for an ExecuteUserScriptError (process.check_error).

    The toolkit itself then exits 1, whatever the script's code was (trainer.train catches the
    ClientError); the code survives only in this message.
    """
    extra = "OutOfMemory: Process killed by SIGKILL (signal 9)" if returncode == 137 else None
    lines = ["ExecuteUserScriptError:", f"ExitCode {returncode}", f'ErrorMessage "{error_message}"']
    if extra is not None:
        lines.append(f'ExtraInfo "{extra}"')
    lines.append(f'Command "{" ".join(command)}"')
    message = "\n".join(lines)
    return message.strip()


# --- hyperparameters --------------------------------------------------------------------------


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """Encode each value as the SageMaker Python SDK does for script mode: ``json.dumps`` of
    the Python value, so the CreateTrainingJob string map keeps its type (``"3"`` stays a
    string, ``3`` an int). SageMaker writes the map as-is to hyperparameters.json.

    (The v3 ModelTrainer passes plain strings through unencoded instead; both decode the same
    way except for strings that happen to be valid JSON, such as ``"3"`` or ``"true"``.)
    """
    encoded = {}
    for key, value in hyperparameters.items():
        try:
            encoded[key] = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"hyperparameter {key!r}: {type(value).__name__} value {value!r} cannot be "
                "sent to SageMaker (it must be JSON-serializable: str, int, float, bool, None,"
                " list or dict)"
            ) from exc
    return encoded


def decode_hyperparameters(stored: Mapping[str, Any]) -> dict[str, Any]:
    """environment.read_hyperparameters: ``json.loads`` each stored value; keep the raw value
    when that fails (ValueError, or TypeError for a value that is not a string)."""
    decoded = {}
    for key, value in stored.items():
        with contextlib.suppress(ValueError, TypeError):
            value = json.loads(value)
        decoded[key] = value
    return decoded


def _split_hyperparameters(decoded: Mapping[str, Any]) -> tuple[dict, dict]:
    """mapping.split_by_criteria(keys=SAGEMAKER_HYPERPARAMETERS, prefix="sagemaker_"):
    (the user's hyperparameters, the reserved ones), both in file order."""
    user, reserved = {}, {}
    for key, value in decoded.items():
        if key in RESERVED_HYPERPARAMETERS or key.startswith(SAGEMAKER_PREFIX):
            reserved[key] = value
        else:
            user[key] = value
    return user, reserved


def _arg_text(obj: Any) -> str:
    """mapping._decode: None is "", bytes are latin-1, anything else str()."""
    if obj is None:
        return ""
    if isinstance(obj, bytes):
        return obj.decode("latin1")
    return str(obj)


def _to_cmd_args(mapping: Mapping[str, Any]) -> list[str]:
    """mapping.to_cmd_args: keys sorted by code point, ``--key`` exactly as written (``-k``
    for a one-letter key), then the value: dicts as ``k=v`` pairs joined by commas in key
    order, everything else str() (so True, [1, 2], 0.001; None gives "", still passed)."""
    argv = []
    for key in sorted(mapping):
        name = _arg_text(key)
        if name:
            name = f"--{name}" if len(name) > 1 else f"-{name}"
        value = mapping[key]
        if hasattr(value, "items"):
            text = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        else:
            text = _arg_text(value)
        argv += [name, text]
    return argv


def hyperparameters_to_argv(hyperparameters: Mapping[str, Any]) -> list[str]:
    """The script's arguments for these (Python-valued) hyperparameters, exactly as the
    toolkit builds them after the values round-trip through hyperparameters.json (so a tuple
    arrives as a list and dict keys as strings). Reserved keys (``sagemaker_*``,
    ``_tuning_objective_metric``, ``default_user_module_name``) never become arguments."""
    user, _ = _split_hyperparameters(
        decode_hyperparameters(encode_hyperparameters(hyperparameters))
    )
    return _to_cmd_args(user)


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


# --- host probes ------------------------------------------------------------------------------


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


def detect_num_cpus() -> int:
    """environment.num_cpus is multiprocessing.cpu_count(), which is os.cpu_count()."""
    return os.cpu_count() or 1


# --- the environment the toolkit computes ---------------------------------------------------


def _pythonpath(code_dir: Path, environ: Mapping[str, str]) -> str:
    # environment.write_env_vars sets PYTHONPATH to the toolkit's sys.path, in which
    # entry_point.install put the code dir first. The code dir first is what matters.
    inherited = environ.get("PYTHONPATH", "")
    return str(code_dir) + (os.pathsep + inherited if inherited else "")


def toolkit_env(
    base_dir: Path,
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
    these three config files. Mirrors environment.Environment.__init__ line by line, for a
    process in which SAGEMAKER_PROGRAM, SAGEMAKER_TRAINING_MODULE and SM_HP_MP_PARAMETERS are
    unset. ``training_job_name`` is the platform's TRAINING_JOB_NAME (SM_TRAINING_ENV's
    ``job_name``; null when unset).
    """
    base = str(base_dir)
    code_dir = os.path.join(base, "code")
    model_dir = os.path.join(base, "model")
    input_dir = os.path.join(base, "input")
    input_config_dir = os.path.join(input_dir, "config")
    output_dir = os.path.join(base, "output")
    output_data_dir = os.path.join(output_dir, "data")
    output_intermediate_dir = os.path.join(output_dir, "intermediate")

    all_hps = decode_hyperparameters(stored_hyperparameters)
    hyperparameters, sagemaker_hps = _split_hyperparameters(all_hps)
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
    channel_input_dirs = {ch: os.path.join(input_dir, "data", ch) for ch in input_data_config}

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
        "user_args": _to_cmd_args(hyperparameters),
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
    env["SAGEMAKER_JOB_NAME"] = _arg_text(sagemaker_hps.get(JOB_NAME_PARAM, ""))
    env["CURRENT_HOST"] = current_host
    env["SAGEMAKER_REGION"] = _arg_text(region)
    return env


# --- preparing a tree -------------------------------------------------------------------------


def _entry_point_type(code_dir: Path, program: str) -> str:
    """_entry_point_type.get: a .sh is a command; otherwise setup.py makes the code dir a
    package; otherwise a .py is a program; anything else is a command."""
    if program.endswith(".sh"):
        return "command"
    if (code_dir / "setup.py").exists():
        return "package"
    return "program" if program.endswith(".py") else "command"


def _command(code_dir: Path, program: str, argv: list[str], python: str) -> list[str]:
    """process.ProcessRunner._create_command."""
    kind = _entry_point_type(code_dir, program)
    if kind == "package":
        # The toolkit pip-installs the package first; `-m` from the code dir is enough here.
        return [python, "-m", re.sub(r"\.py$", "", program), *argv]
    if kind == "program":
        # "--" so that the name can never be read as an interpreter option.
        return [python, "--", program, *argv]
    # The one place a shell is involved; every argument is quoted for that single parse.
    quoted = " ".join(shlex.quote(a) for a in argv)
    return ["/bin/sh", "-c", f"./{shlex.quote(program)} {quoted}"]


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` show ``source`` without copying data; copy when symlinks fail
    (Windows without the privilege, some network file systems)."""
    try:
        os.symlink(source, target, target_is_directory=source.is_dir())
    except OSError:
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def prepare_container_tree(
    job: ContainerJob, root: Path, *, python: str | None = None
) -> ContainerTree:
    """Lay out the /opt/ml tree for ``job`` under ``root`` and compute how to run it.

    ``root`` may exist and hold other files, but none of the names created here (input,
    model, output, code, checkpoints): nothing is ever overwritten. ``python`` defaults to
    this interpreter (process.python_executable is sys.executable too).
    """
    root = Path(root).resolve()
    source_dir = Path(job.source_dir).resolve()
    program = job.program
    if (
        not program
        or not _SAFE_ENTRY_POINT.match(program)
        or any(part in (".", "..") for part in program.split("/"))
    ):
        raise ValueError(
            f"program {program!r}: the SageMaker training toolkit only runs a plain relative "
            "path inside the source dir (letters, digits, '.', '_', '+', '-', '/'; no leading"
            " '-' or '/', no '.' or '..' segments), e.g. 'train.py'"
        )
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source_dir {source_dir} is not a directory")
    if not (source_dir / program).is_file():
        raise FileNotFoundError(f"program {program!r} not found in source_dir {source_dir}")
    clash = sorted(SCRIPT_MODE_PARAMS & set(job.hyperparameters))
    if clash:
        raise ValueError(
            f"hyperparameter(s) {', '.join(clash)} are set from the job itself (program, "
            "source dir, log level, job name, region) and cannot be given as hyperparameters"
        )
    channels = {}
    for name, location in job.channels.items():
        if not CHANNEL_NAME.match(name):
            raise ValueError(
                f"channel name {name!r}: SageMaker allows 1 to 64 letters, digits, '.', '-' and '_'"
            )
        location = Path(location).resolve()
        if not location.exists():
            raise FileNotFoundError(f"channel {name!r}: {location} does not exist")
        channels[name] = location

    root.mkdir(parents=True, exist_ok=True)
    taken = [n for n in ("input", "model", "output", "code", "checkpoints") if (root / n).exists()]
    if taken:
        raise FileExistsError(f"{root} already holds {', '.join(taken)}; use a fresh directory")

    code_dir = root / "code"
    model_dir = root / "model"
    input_dir = root / "input"
    input_config_dir = input_dir / "config"
    input_data_dir = input_dir / "data"
    output_dir = root / "output"
    output_data_dir = output_dir / "data"
    output_intermediate_dir = output_dir / "intermediate"
    checkpoint_dir = root / "checkpoints"
    for d in (
        model_dir,
        input_config_dir,
        input_data_dir,
        output_data_dir,
        output_intermediate_dir,
        checkpoint_dir,
    ):
        d.mkdir(parents=True)

    # The snapshot the run executes from, as the container runs sourcedir.tar.gz unpacked
    # into /opt/ml/code: later edits to source_dir cannot change a run in flight.
    shutil.copytree(source_dir, code_dir, ignore=shutil.ignore_patterns(*SNAPSHOT_IGNORE))
    if _entry_point_type(code_dir, program) == "command":
        # entry_point.install makes a command entry point executable.
        entry = code_dir / program
        entry.chmod(entry.stat().st_mode | 0o111)

    # File-mode channels. A single file arrives in its channel dir, as an S3 prefix naming
    # one object does.
    channel_dirs = {}
    for name, location in channels.items():
        target = input_data_dir / name
        if location.is_dir():
            _link_or_copy(location, target)
        else:
            target.mkdir()
            _link_or_copy(location, target / location.name)
        channel_dirs[name] = target

    stored = encode_hyperparameters(job.hyperparameters)
    stored.update(
        {
            PROGRAM_PARAM: json.dumps(program),
            # On SageMaker an s3:// URI of sourcedir.tar.gz; the toolkit unpacks it into
            # the code dir. Locally the code dir itself (download_and_extract: uri == path).
            SUBMIT_DIR_PARAM: json.dumps(str(code_dir)),
            LOG_LEVEL_PARAM: json.dumps(job.log_level),
            JOB_NAME_PARAM: json.dumps(job.job_name),
            REGION_PARAM: json.dumps(job.region),
        }
    )
    resource_config = {
        "current_host": CURRENT_HOST,
        "current_instance_type": job.instance_type,
        "current_group_name": INSTANCE_GROUP,
        "hosts": [CURRENT_HOST],
        "instance_groups": [
            {
                "instance_group_name": INSTANCE_GROUP,
                "instance_type": job.instance_type,
                "hosts": [CURRENT_HOST],
            }
        ],
        "network_interface_name": NETWORK_INTERFACE,
    }
    input_data_config = {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    _write_json(input_config_dir / "hyperparameters.json", stored)
    _write_json(input_config_dir / "resourceconfig.json", resource_config)
    _write_json(input_config_dir / "inputdataconfig.json", input_data_config)

    # Computed from the files just written, as the toolkit reads them.
    env = toolkit_env(
        root,
        json.loads((input_config_dir / "hyperparameters.json").read_text(encoding="utf-8")),
        resource_config,
        input_data_config,
        num_cpus=detect_num_cpus(),
        num_gpus=detect_num_gpus(),
        num_neurons=0,
        training_job_name=job.job_name,
    )
    # The platform sets TRAINING_JOB_NAME in every training container.
    env["TRAINING_JOB_NAME"] = job.job_name
    env["PYTHONPATH"] = _pythonpath(code_dir, os.environ)
    env["SM_CHECKPOINT_DIR"] = str(checkpoint_dir)
    env["SAGEMAKER_BASE_DIR"] = str(root)

    argv = _to_cmd_args(_split_hyperparameters(decode_hyperparameters(stored))[0])
    command = _command(code_dir, program, argv, python or sys.executable)
    return ContainerTree(
        root=root,
        code_dir=code_dir,
        model_dir=model_dir,
        input_dir=input_dir,
        input_config_dir=input_config_dir,
        input_data_dir=input_data_dir,
        output_dir=output_dir,
        output_data_dir=output_data_dir,
        output_intermediate_dir=output_intermediate_dir,
        checkpoint_dir=checkpoint_dir,
        failure_file=output_dir / "failure",
        success_file=output_dir / "success",
        channel_dirs=channel_dirs,
        env=env,
        argv=argv,
        command=command,
    )
