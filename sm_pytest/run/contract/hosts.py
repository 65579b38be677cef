"""More than one host: the host names, the rendezvous, and what the PyTorch image adds.

On SageMaker every instance of a job runs the same container. The platform names them
``algo-1`` .. ``algo-N`` and writes the list, sorted as strings, into every host's
``resourceconfig.json`` (the toolkit's ``environment.py`` reads it as it is: "sorted
lexicographically"). The PyTorch image's launcher (sagemaker-pytorch-training-toolkit
``training.py``) then points every host at the first one: ``MASTER_ADDR`` is the master
host's name and ``MASTER_PORT`` 7777, plus three NCCL settings. With
``distribution={"torch_distributed": {"enabled": True}}`` the generic toolkit
(sagemaker-training ``torch_distributed.py``) starts ``torchrun`` on every host instead of
the script.

Locally every host is a process on this machine: ``algo-N`` does not resolve and 7777 may be
taken, so the rendezvous is ``127.0.0.1`` and a free port (``Rendezvous.local``), and the
network interface is the loopback one.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DISTRIBUTIONS",
    "LOOPBACK_INTERFACE",
    "TORCH_DISTRIBUTED",
    "TORCH_DISTRIBUTED_PARAM",
    "INSTANCE_TYPE_PARAM",
    "Rendezvous",
    "distribution_hyperparameters",
    "host_names",
    "launcher_env",
    "torchrun_command",
    "uses_torch_distributed",
]

TORCH_DISTRIBUTED = "torch_distributed"
# The distribution strategies reproduced here (the SDK knows more: mpi, smdistributed, ...).
DISTRIBUTIONS = frozenset({TORCH_DISTRIBUTED})
# sagemaker-python-sdk v2 pytorch/estimator.py: LAUNCH_TORCH_DISTRIBUTED_ENV_NAME and
# INSTANCE_TYPE_ENV_NAME, the hyperparameters `distribution` becomes.
TORCH_DISTRIBUTED_PARAM = "sagemaker_torch_distributed_enabled"
INSTANCE_TYPE_PARAM = "sagemaker_instance_type"
# Where local hosts talk: the loopback interface (Linux `lo`, macOS `lo0`).
LOOPBACK_INTERFACE = "lo0" if sys.platform == "darwin" else "lo"


def host_names(count: int) -> tuple[str, ...]:
    """``algo-1`` .. ``algo-<count>`` in the order SageMaker lists them: sorted as strings,
    so ``algo-10`` comes before ``algo-2`` (the toolkit's environment.py does not re-sort;
    host 0 of that list is the master)."""
    if count < 1:
        raise ValueError(f"instance count {count}: a job has at least 1 host")
    return tuple(sorted(f"algo-{i}" for i in range(1, count + 1)))


@dataclass(frozen=True)
class Rendezvous:
    """Where the hosts of one run meet: MASTER_ADDR and MASTER_PORT.

    On SageMaker that is the first host's name and 7777 (pytorch toolkit training.py
    ``MASTER_PORT = '7777'``, torch_distributed.py the same). One per run, shared by its
    hosts."""

    master_addr: str
    master_port: int

    @classmethod
    def local(cls) -> Rendezvous:
        """127.0.0.1 and a TCP port that is free now (bound to port 0, then released): host
        names do not resolve here and 7777 may be in use, e.g. by another run."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return cls("127.0.0.1", port)


def uses_torch_distributed(distribution: Mapping[str, Any]) -> bool:
    """``{"torch_distributed": {"enabled": True}}``, as the SDK's PyTorch estimator reads it
    (``distribution.get("torch_distributed", {}).get("enabled", False)``). Unknown keys are
    refused: they would mean a launcher that is not reproduced."""
    unknown = sorted(set(distribution) - DISTRIBUTIONS)
    if unknown:
        raise ValueError(
            f"distribution {', '.join(unknown)}: only {TORCH_DISTRIBUTED!r} is supported"
        )
    entry = distribution.get(TORCH_DISTRIBUTED) or {}
    return bool(entry.get("enabled", False)) if isinstance(entry, Mapping) else False


def distribution_hyperparameters(distribution: Mapping[str, Any], instance_type: str) -> dict:
    """The hyperparameters the SDK adds for ``distribution`` (pytorch/estimator.py
    ``_pytorch_distribution_configuration``), as Python values: JSON-encoded with the rest,
    they become ``"true"`` and ``"\\"ml.p4d.24xlarge\\""``."""
    if not uses_torch_distributed(distribution):
        return {}
    return {TORCH_DISTRIBUTED_PARAM: True, INSTANCE_TYPE_PARAM: instance_type}


def launcher_env(rendezvous: Rendezvous, network_interface: str, *,
                 torch_distributed: bool) -> dict[str, str]:
    """What the PyTorch image sets before it starts anything, on every host.

    sagemaker-pytorch-training-toolkit training.py: ``_set_nccl_environment``
    (NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE=1, NCCL_DEBUG=WARN) and
    ``_set_distributed_environment`` (MASTER_ADDR, MASTER_PORT). sagemaker-training
    torch_distributed.py ``_setup`` adds NCCL_PROTO=simple (the EFA variables only for EFA
    instance types, never local). GLOO_SOCKET_IFNAME is ours: gloo picks the interface the
    host name resolves to, and locally the hosts only meet on loopback.
    """
    env = {
        "NCCL_SOCKET_IFNAME": network_interface,
        "NCCL_IB_DISABLE": "1",
        "NCCL_DEBUG": "WARN",
        "MASTER_ADDR": rendezvous.master_addr,
        "MASTER_PORT": str(rendezvous.master_port),
        "GLOO_SOCKET_IFNAME": network_interface,
    }
    if torch_distributed:
        env["NCCL_PROTO"] = "simple"
        # Ours: a single-host torchrun gets no --master_port (torch_distributed.py) and would
        # use its default 29500, which two local runs at once would both take. torchrun reads
        # any of its options from PET_<OPTION>; flags given on the command line win.
        env["PET_MASTER_ADDR"] = rendezvous.master_addr
        env["PET_MASTER_PORT"] = str(rendezvous.master_port)
    return env


def torchrun_command(python: str, program: str, argv: list[str], *, hosts: tuple[str, ...],
                     current_host: str, processes_per_host: int,
                     rendezvous: Rendezvous) -> list[str]:
    """sagemaker-training torch_distributed.py ``_create_command``: torchrun with
    ``--nnodes N --nproc_per_node P``, and for N > 1 ``--master_addr --master_port
    --node_rank R`` (R: the host's index in the host list), then the program and its
    arguments. ``torchrun`` is ``python -m torch.distributed.run`` (the same module its
    console script calls), so that it is this interpreter's torch."""
    command = [python, "-m", "torch.distributed.run", "--nnodes", str(len(hosts)),
               "--nproc_per_node", str(processes_per_host)]
    if len(hosts) > 1:
        command += ["--master_addr", rendezvous.master_addr,
                    "--master_port", str(rendezvous.master_port),
                    "--node_rank", str(hosts.index(current_host))]
    return [*command, program, *argv]
