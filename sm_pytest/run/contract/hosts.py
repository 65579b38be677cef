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

import os
import random
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sm_pytest.run.contract.environment import detect_num_gpus

__all__ = [
    "DISTRIBUTIONS",
    "LOOPBACK_INTERFACE",
    "TORCH_DISTRIBUTED",
    "TORCH_DISTRIBUTED_PARAM",
    "INSTANCE_TYPE_PARAM",
    "Rendezvous",
    "distribution_hyperparameters",
    "ephemeral_range",
    "free_local_port",
    "host_names",
    "launcher_env",
    "local_host_devices",
    "visible_gpus",
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
        """127.0.0.1 and a TCP port that is free now: host names do not resolve here and
        7777 may be in use, e.g. by another run. See :func:`free_local_port`."""
        return cls("127.0.0.1", free_local_port())


# Where the kernel draws ephemeral (port 0, outgoing) ports from, on Linux.
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
# The lowest port picked below the ephemeral range: above the registered services that
# commonly listen on a development machine (databases, web servers: 3306, 5432, 8080...).
LOWEST_PORT = 20000
_PORT_TRIES = 50


def ephemeral_range(path: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's ephemeral port range (``"32768\t60999"`` on Linux), or None where it
    cannot be read."""
    try:
        with open(path, encoding="ascii") as file:
            low, high = (int(part) for part in file.read().split()[:2])
    except (OSError, ValueError):
        return None
    return low, high


def free_local_port(*, range_file: str = EPHEMERAL_RANGE_FILE) -> int:
    """A TCP port on 127.0.0.1 that is free now and, where the kernel says which ports it
    hands out itself, outside that range.

    The port is released here and bound by the master seconds later. A port from the
    ephemeral range (what binding port 0 returns) may be taken in between by any other
    socket the kernel numbers, e.g. the gloo listeners and connections of other runs, which
    all draw from that range; a port below it is only taken by a program that asks for it
    by number. So: random ports from ``LOWEST_PORT`` to just below the range, each
    test-bound; port 0 where the range is unknown or nothing below it is free."""
    limits = ephemeral_range(range_file)
    if limits is not None and limits[0] - 1 > LOWEST_PORT:
        for _ in range(_PORT_TRIES):
            port = random.randint(LOWEST_PORT, limits[0] - 1)  # noqa: S311 (not a secret)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs a local run may use, as CUDA_VISIBLE_DEVICES entries: the ones that variable
    lists (indexes or UUIDs, up to the first invalid one, as CUDA reads it), else ``0`` ..
    ``G-1`` for the host's G GPUs (environment.detect_num_gpus counts them)."""
    environ = os.environ if environ is None else environ
    count = detect_num_gpus(environ)
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(index) for index in range(count)]
    return [entry.strip() for entry in listed.split(",")][:count]


def local_host_devices(hosts: Sequence[str], current_host: str,
                       environ: Mapping[str, str] | None = None) -> str | None:
    """CUDA_VISIBLE_DEVICES for ``current_host`` when several local hosts share this
    machine's GPUs, or None to leave it as it is (one host, or no GPU: CPU training).

    On SageMaker every instance has its own GPUs; here the hosts are processes on one
    machine, and each using all of them would put one rank per host on the same device
    (NCCL: "Duplicate GPU detected"). So each host gets its own G // N of the visible GPUs,
    in host-list order, as the CPU threads are divided; SM_NUM_GPUS and torchrun's
    --nproc_per_node then count that share. Fewer GPUs than hosts is refused (the plugin
    says so before the run: items.local_hosts_problem)."""
    visible = visible_gpus(environ)
    if len(hosts) <= 1 or not visible:
        return None
    share = len(visible) // len(hosts)
    if share == 0:
        raise ValueError(
            f"{len(hosts)} hosts on this machine's {len(visible)} GPU(s): each local host "
            "needs a GPU of its own; use at most as many hosts as GPUs, or set "
            "CUDA_VISIBLE_DEVICES= (empty) to train on the CPU")
    index = list(hosts).index(current_host)
    return ",".join(visible[index * share:(index + 1) * share])


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
