"""A container tree: the /opt/ml layout prepared under a run directory, and how to start
the script in it.

``prepare_container_tree`` checks the job as the toolkit and the service would (program
name, channel names, reserved hyperparameters), snapshots the source into the code dir,
links the channels in, writes the three config files SageMaker writes, and computes the
script's environment and command from them. ``ContainerTree.record_exit`` then writes what
``trainer.train()`` writes when the script ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.run.contract.environment import (
    CURRENT_HOST,
    INSTANCE_GROUP,
    NETWORK_INTERFACE,
    detect_num_cpus,
    detect_num_gpus,
    inherited,
    pythonpath,
    toolkit_env,
)
from sm_pytest.run.contract.hosts import (
    LOOPBACK_INTERFACE,
    Rendezvous,
    distribution_hyperparameters,
    launcher_env,
    local_host_devices,
    torchrun_command,
    uses_torch_distributed,
)
from sm_pytest.run.contract.hyperparameters import (
    JOB_NAME_PARAM,
    LOG_LEVEL_PARAM,
    PROGRAM_PARAM,
    REGION_PARAM,
    SCRIPT_MODE_PARAMS,
    SUBMIT_DIR_PARAM,
    decode_hyperparameters,
    encode_hyperparameters,
    split_hyperparameters,
    to_cmd_args,
)
from sm_pytest.run.contract.layout import ContainerLayout
from sm_pytest.run.hashing import SNAPSHOT_IGNORE

__all__ = [
    "CHANNEL_NAME",
    "ContainerJob",
    "ContainerTree",
    "prepare_container_tree",
    "toolkit_failure_message",
]

# process.validate_entry_point: the toolkit refuses any other program name (ClientError).
_SAFE_ENTRY_POINT = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")
# API_Channel.ChannelName.
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")


@dataclass(frozen=True)
class ContainerJob:
    """What SageMaker would be asked to run: CreateTrainingJob, reduced to what the container
    sees.

    ``hyperparameters`` are the user's, with Python values; they are JSON-encoded the way the
    SageMaker Python SDK does for script mode. ``channels`` map a channel name to a local
    directory (or a single file). ``region`` "" means "none" (SAGEMAKER_REGION is then "").
    ``hosts`` are the job's host names (hosts.host_names: InstanceCount of them);
    ``distribution`` is the SDK's estimator argument (only ``torch_distributed`` here).
    """

    job_name: str
    program: str
    source_dir: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    channels: Mapping[str, Path] = field(default_factory=dict)
    instance_type: str = "local"
    region: str = ""
    log_level: int = logging.INFO  # the SDK's container_log_level
    hosts: tuple[str, ...] = (CURRENT_HOST,)
    distribution: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerTree(ContainerLayout):
    """A prepared run directory: the /opt/ml layout under ``root`` (its paths are the
    ContainerLayout's), plus how to start the program in it.

    Run ``command`` with ``cwd=code_dir`` (the toolkit runs it from the code dir, with a
    relative program name) and an environment of ``process_env()`` (or the inherited
    environment updated with ``env``).
    """

    channel_dirs: dict[str, Path]
    env: dict[str, str]
    argv: list[str]
    command: list[str]

    @property
    def cwd(self) -> Path:
        """Where the program starts (process.ProcessRunner.run: ``cwd=environment.code_dir``)."""
        return self.code_dir

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The complete environment for the program: ``base`` (default ``os.environ``) without
        any inherited ``SM_*`` or other contract-owned variable, updated with ``env``.

        The toolkit runs the script with the container's whole environment plus its own
        variables (entry_point.run -> environment.write_env_vars); PYTHONPATH is the code dir
        first, then ``base``'s own PYTHONPATH.
        """
        base = os.environ if base is None else base
        merged = {k: v for k, v in base.items() if inherited(k)}
        merged.update(self.env)
        merged["PYTHONPATH"] = pythonpath(self.code_dir, base)
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


# --- preparing a tree -----------------------------------------------------------------------


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
    job: ContainerJob,
    root: Path,
    *,
    python: str | None = None,
    current_host: str | None = None,
    rendezvous: Rendezvous | None = None,
) -> ContainerTree:
    """Lay out the /opt/ml tree of one host of ``job`` under ``root`` and compute how to run
    it there.

    ``root`` may exist and hold other files, but none of the names created here (input,
    model, output, code, checkpoints): nothing is ever overwritten. ``python`` defaults to
    this interpreter (process.python_executable is sys.executable too). ``current_host``
    (default: the first host) is the host this tree is for. With ``rendezvous`` the PyTorch
    image's launcher variables are added (hosts.launcher_env) and the hosts meet on the
    loopback interface; with torch_distributed the command is torchrun. One host, no
    distribution and no rendezvous: the single-container tree, exactly.
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
    # As the platform lists them (hosts.host_names): sorted as strings.
    hosts = sorted(job.hosts)
    if not hosts or len(set(hosts)) != len(hosts):
        raise ValueError(f"hosts {list(job.hosts)!r}: give one or more distinct host names")
    current_host = hosts[0] if current_host is None else current_host
    if current_host not in hosts:
        raise ValueError(f"current host {current_host!r} is not one of the hosts {hosts}")
    torch_distributed = uses_torch_distributed(job.distribution)
    if torch_distributed and not program.endswith(".py"):
        # sdk fw_utils.validate_torch_distributed_distribution; the toolkit's
        # torch_distributed.py raises a ClientError too.
        raise ValueError(
            f"program {program!r}: Unsupported entry point type for the distribution "
            "torch_distributed. Only python programs (*.py) are supported."
        )
    if torch_distributed and rendezvous is None:
        raise ValueError("torch_distributed needs a rendezvous (hosts.Rendezvous.local())")
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source_dir {source_dir} is not a directory")
    if not (source_dir / program).is_file():
        raise FileNotFoundError(f"program {program!r} not found in source_dir {source_dir}")
    distribution_params = distribution_hyperparameters(job.distribution, job.instance_type)
    clash = sorted((SCRIPT_MODE_PARAMS | set(distribution_params)) & set(job.hyperparameters))
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

    layout = ContainerLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [entry.name for entry in layout.top_level if entry.exists()]
    if taken:
        raise FileExistsError(f"{root} already holds {', '.join(taken)}; use a fresh directory")
    for d in layout.empty_dirs:
        d.mkdir(parents=True)

    # The snapshot the run executes from, as the container runs sourcedir.tar.gz unpacked
    # into /opt/ml/code: later edits to source_dir cannot change a run in flight.
    shutil.copytree(source_dir, layout.code_dir, ignore=shutil.ignore_patterns(*SNAPSHOT_IGNORE))
    if _entry_point_type(layout.code_dir, program) == "command":
        # entry_point.install makes a command entry point executable.
        entry = layout.code_dir / program
        entry.chmod(entry.stat().st_mode | 0o111)

    # File-mode channels. A single file arrives in its channel dir, as an S3 prefix naming
    # one object does.
    channel_dirs = {}
    for name, location in channels.items():
        target = layout.channel_dir(name)
        if location.is_dir():
            _link_or_copy(location, target)
        else:
            target.mkdir()
            _link_or_copy(location, target / location.name)
        channel_dirs[name] = target

    stored = encode_hyperparameters({**job.hyperparameters, **distribution_params})
    stored.update(
        {
            PROGRAM_PARAM: json.dumps(program),
            # On SageMaker an s3:// URI of sourcedir.tar.gz; the toolkit unpacks it into
            # the code dir. Locally the code dir itself (download_and_extract: uri == path).
            SUBMIT_DIR_PARAM: json.dumps(str(layout.code_dir)),
            LOG_LEVEL_PARAM: json.dumps(job.log_level),
            JOB_NAME_PARAM: json.dumps(job.job_name),
            REGION_PARAM: json.dumps(job.region),
        }
    )
    # Locally the hosts of a run meet on loopback: that is the interface their traffic
    # uses, so that is the one the tree names (SM_NETWORK_INTERFACE_NAME, NCCL/GLOO).
    interface = NETWORK_INTERFACE if rendezvous is None else LOOPBACK_INTERFACE
    resource_config = {
        "current_host": current_host,
        "current_instance_type": job.instance_type,
        "current_group_name": INSTANCE_GROUP,
        "hosts": list(hosts),
        "instance_groups": [
            {
                "instance_group_name": INSTANCE_GROUP,
                "instance_type": job.instance_type,
                "hosts": list(hosts),
            }
        ],
        "network_interface_name": interface,
    }
    input_data_config = {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    _write_json(layout.hyperparameters_file, stored)
    _write_json(layout.resource_config_file, resource_config)
    _write_json(layout.input_data_config_file, input_data_config)

    # Several local hosts divide this machine's GPUs among them (hosts.local_host_devices);
    # a rendezvous is what marks hosts that run here.
    devices = local_host_devices(hosts, current_host) if rendezvous is not None else None
    num_gpus = detect_num_gpus(None if devices is None else {"CUDA_VISIBLE_DEVICES": devices})
    # Computed from the files just written, as the toolkit reads them.
    env = toolkit_env(
        layout,
        json.loads(layout.hyperparameters_file.read_text(encoding="utf-8")),
        resource_config,
        input_data_config,
        num_cpus=detect_num_cpus(),
        num_gpus=num_gpus,
        num_neurons=0,
        training_job_name=job.job_name,
    )
    # The platform sets TRAINING_JOB_NAME in every training container.
    env["TRAINING_JOB_NAME"] = job.job_name
    env["PYTHONPATH"] = pythonpath(layout.code_dir, os.environ)
    env["SM_CHECKPOINT_DIR"] = str(layout.checkpoint_dir)
    env["SAGEMAKER_BASE_DIR"] = str(root)
    if rendezvous is not None:
        env.update(launcher_env(rendezvous, interface, torch_distributed=torch_distributed))
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices

    argv = to_cmd_args(split_hyperparameters(decode_hyperparameters(stored))[0])
    if torch_distributed:
        assert rendezvous is not None
        # runner.py: P is the GPU count, else the Neuron count, else 1.
        command = torchrun_command(
            python or sys.executable, program, argv, hosts=tuple(hosts),
            current_host=current_host, processes_per_host=num_gpus or 1,
            rendezvous=rendezvous,
        )
    else:
        command = _command(layout.code_dir, program, argv, python or sys.executable)
    return ContainerTree(root=root, channel_dirs=channel_dirs, env=env, argv=argv,
                         command=command)
