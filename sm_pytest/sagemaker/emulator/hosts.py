"""The hosts of one emulated job attempt: one container per instance, started together.

    from sm_pytest.sagemaker.emulator.hosts import HostRun, merge_folders, start_hosts

A job with ``ResourceConfig.InstanceCount`` N runs on N hosts, ``algo-1`` .. ``algo-N``
(:func:`sm_pytest.run.contract.host_names`). Each host has its own container tree (laid out
by :meth:`~sm_pytest.sagemaker.emulator.staging.JobStaging.prepare_trees`), its own process
group and its own CloudWatch stream ``<job>/algo-<n>-<epoch seconds>`` ("Each training job
has one log stream per node on which it was trained", SageMaker developer guide,
common-info-all-sagemaker-models-logs.md). :class:`HostRun` is one host of one attempt; the
job runner (:mod:`sm_pytest.sagemaker.emulator.jobs`) polls them together: a host failing
fails the job (which one is blamed: :mod:`sm_pytest.run.host_failure`, as locally), and
every other host is stopped. The hosts run on this machine, so they divide its GPUs among
them as local hosts do (each its own CUDA_VISIBLE_DEVICES share, laid out with its tree:
:func:`sm_pytest.run.contract.hosts.local_host_devices`).

After the attempt, every host's /opt/ml/model is merged into one model.tar.gz, and every
host's /opt/ml/output/data into one output.tar.gz (:func:`merge_folders`): "If multiple
containers in a single training job write to this directory they should ensure no
file/directory names clash. SageMaker aggregates the result in a TAR file"
(your-algorithms-training-algo-output.md). Which host wins a clash is not documented; the
SageMaker Python SDK's local mode (``local/image.py retrieve_artifacts``) copies the hosts
in host-list order, later ones overriding, and so does the emulator.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.run.contract import ContainerTree
from sm_pytest.run.processes import Group

__all__ = ["HostRun", "merge_folders", "start_hosts", "stop_hosts"]


@dataclass
class HostRun:
    """One host (container) of one attempt."""

    name: str
    #: None only for the lines of an attempt that failed before its trees were laid out.
    tree: ContainerTree | None
    log_stream: str | None = None
    process: Group | None = None
    reader: threading.Thread | None = None
    returncode: int | None = None
    #: Everything the host printed (and the runner's lines about it), in order.
    lines: list[str] = field(default_factory=list)
    #: (timestamp in ms, line) not yet put to the host's stream; guarded by ``lock``.
    pending: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: When the job runner saw it exit (monotonic), and its failure file's mtime then.
    seen_at: float | None = None
    written_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exited(self) -> bool:
        return self.process is not None and self.process.exited()

    def failed(self) -> bool:
        """The program has exited with a status other than 0, read without reaping it:
        Group.end reaps the leader later, after killing what it left behind."""
        status = self.process.exit_status() if self.process is not None else None
        return status is not None and status != 0

    def take_pending(self) -> list[tuple[int, str]]:
        with self.lock:
            batch, self.pending = self.pending, []
        return batch


def start_hosts(
    hosts: Sequence[HostRun],
    env_for: Callable[[ContainerTree], Mapping[str, str]],
    on_line: Callable[[HostRun, str], None],
    *,
    thread_name: str,
) -> None:
    """Start every host's program, each in its own process group, with a reader thread
    that hands each of its output lines to ``on_line``. All hosts start before any is
    waited on: SageMaker starts the containers of a job together, and a torchrun
    rendezvous needs every node up."""
    for host in hosts:
        tree = host.tree
        assert tree is not None
        host.process = Group(
            tree.command,
            cwd=tree.code_dir,
            env=dict(env_for(tree)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        host.reader = threading.Thread(
            target=_read, args=(host.process.process.stdout, host, on_line),
            name=f"{thread_name}:{host.name}", daemon=True)
        host.reader.start()


def _read(stream: Any, host: HostRun, on_line: Callable[[HostRun, str], None]) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            on_line(host, raw.decode("utf-8", "replace").rstrip("\r\n"))


def merge_folders(folders: Sequence[Path], target: Path) -> Path:
    """Copy every folder's contents into ``target``, in order, later folders overriding
    same-named files (SDK local mode ``retrieve_artifacts``: "it will override duplicate
    files if multiple containers have the same file names"); ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        if folder.is_dir():
            shutil.copytree(folder, target, dirs_exist_ok=True, symlinks=True)
    return target


def stop_hosts(hosts: Sequence[HostRun], grace: float) -> None:
    """Stop every host together: SIGTERM to all, then SIGKILL to all after ``grace``
    seconds (at once when ``grace`` is 0), as Group.stop does for one; not one host's
    grace period after another's."""
    running = [h.process for h in hosts if h.process is not None and not h.process.exited()]
    if grace > 0:
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            # settled, not exited: a launcher (torchrun) may exit before its workers
            process.settled(max(0.0, deadline - time.monotonic()))
    for host in hosts:
        if host.process is not None:
            host.process.stop(0.0)
