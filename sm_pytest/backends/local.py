"""Run the training script as a local subprocess inside a replica of the SageMaker container
contract (see run/contract/), so the same script runs here and on SageMaker unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sm_pytest.backends.local_hosts import Host, Hosts, exit_text, host_trees
from sm_pytest.model import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    TIMED_OUT,
    RunInterrupted,
    RunResult,
    RunSetupError,
    interrupted_reason,
)
from sm_pytest.run import contract, signals
from sm_pytest.run.artifacts import write_json_atomic
from sm_pytest.run.processes import Group
from sm_pytest.run.progress import Progress, for_run
from sm_pytest.sagemaker import names
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.metrics import extract, final_values

# How long a run gets to exit after SIGTERM before the whole group is SIGKILLed.
TERMINATE_GRACE_S = 5.0
# How long the log reader may take to drain the pipe once the run's group is gone (a process
# that left the group and kept the pipe open is not waited for longer).
READER_DRAIN_S = 10.0
__all__ = ["LocalBackend", "LocalHandle", "RunSetupError", "job_name_for", "thread_share"]


@dataclass
class LocalHandle:
    run: RunSpec
    tree: contract.ContainerTree
    process: Group | Hosts  # Hosts: a run on several hosts (local_hosts.py)
    reader: threading.Thread | None  # None with Hosts, which read their own logs
    log_path: Path
    started_at: float
    job_name: str
    progress: Progress | None = None

    @property
    def hosts(self) -> Hosts | None:
        return self.process if isinstance(self.process, Hosts) else None


def job_name_for(run: RunSpec, attempt_dir: Path) -> str:
    # Named as the run's SageMaker job would be, the attempt in place of the session token.
    return names.job_name(run, attempt_dir.name)


def _pump(stream, log_path: Path, echo: Callable[[str], None] | None,
          progress: Progress | None) -> None:
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        for line in iter(stream.readline, ""):
            log.write(line)
            if echo is not None:
                echo(line)
            if progress is not None:
                progress.feed(line)
    stream.close()


class LocalBackend:
    name = "local"

    def __init__(self, echo: Callable[[str], None] | None = None,
                 extra_env: dict[str, str] | None = None,
                 progress: Callable[[str], None] | None = None):
        self.echo = echo
        self.extra_env = extra_env or {}
        self.progress = progress  # where live progress lines go; None: none are made

    def submit(self, run: RunSpec, attempt_dir: Path) -> LocalHandle:
        remote = [f"{ch} ({loc})" for ch, loc in run.inputs.items() if loc.startswith("s3://")]
        if remote:
            raise RunSetupError(
                f"{run.path}: input {', '.join(remote)} is on S3; a local run needs local"
                " folders. Use a local path, or run with --sm."
            )
        try:
            # Until the program starts, a signal loses nothing: it starts nothing.
            with signals.interruptible():
                job_name, trees, env = self._prepare(run, attempt_dir)
        except KeyboardInterrupt:
            shutil.rmtree(attempt_dir, ignore_errors=True)  # it holds no run
            raise
        log_path = attempt_dir / "train.log"
        prefix = f"[{run.name}] "
        echo = (lambda line: self.echo(prefix + line)) if self.echo else None
        progress = for_run(run) if self.progress is not None else None
        if len(trees) > 1:
            hosts = Hosts(attempt_dir, [Host(name, tree, attempt_dir / f"{name}.log")
                                        for name, tree in trees],
                          grace=TERMINATE_GRACE_S, drain=READER_DRAIN_S, echo=echo,
                          progress=progress)
            share = thread_share(hosts=len(trees))
            hosts.start(lambda tree: {**self._env(tree), **share})
            return LocalHandle(run, trees[0][1], hosts, None, log_path, time.time(), job_name,
                               progress=progress)
        tree = trees[0][1]
        # Its own process group, which dies with pytest (processes.py).
        process = Group(
            tree.command,
            cwd=tree.code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        reader = threading.Thread(target=_pump, args=(process.process.stdout, log_path, echo,
                                                      progress), daemon=True)
        reader.start()
        return LocalHandle(run, tree, process, reader, log_path, time.time(), job_name,
                           progress=progress)

    def _prepare(self, run: RunSpec, attempt_dir: Path):
        job_name = job_name_for(run, attempt_dir)
        count = run.instance_count
        job = contract.ContainerJob(
            job_name=job_name,
            program=run.entry_point,
            source_dir=run.source_dir,
            hyperparameters=run.hyperparameters,
            channels={name: Path(location) for name, location in run.inputs.items()},
            instance_type="local",
            region="",
            hosts=contract.host_names(count),
            distribution=dict(run.distribution),
        )
        # One rendezvous per run, shared by its hosts: 127.0.0.1 and a free port, since
        # algo-N does not resolve here and 7777 may be taken (contract/hosts.py).
        rendezvous = contract.Rendezvous.local() if count > 1 or run.distribution else None
        try:
            if count > 1:
                trees = host_trees(job, attempt_dir, rendezvous)
            else:
                trees = [(job.hosts[0], contract.prepare_container_tree(
                    job, root=attempt_dir, rendezvous=rendezvous))]
        except (OSError, ValueError) as exc:
            raise RunSetupError(f"{run.path}: cannot prepare the run: {exc}") from None
        write_json_atomic(attempt_dir / "hyperparameters.json", run.hyperparameters)
        if count > 1:
            command = {"hosts": [{"host": name, "argv": tree.command, "cwd": str(tree.code_dir),
                                  "env": tree.env} for name, tree in trees],
                       "max_run": run.max_run}
        else:
            tree = trees[0][1]
            command = {"argv": tree.command, "cwd": str(tree.code_dir), "env": tree.env,
                       "max_run": run.max_run}
        write_json_atomic(attempt_dir / "command.json", command)
        return job_name, trees, self._env(trees[0][1])

    def _env(self, tree: contract.ContainerTree) -> dict[str, str]:
        env = tree.process_env()
        env["PYTHONUNBUFFERED"] = "1"  # the log must stream live, line by line
        for key, value in self.extra_env.items():
            env.setdefault(key, value)
        return env

    def wait(self, handle: LocalHandle) -> RunResult:
        deadline = handle.started_at + handle.run.max_run
        status, reason = None, ""
        try:
            # Only the waiting is cut short by a signal (signals.py); the rest of this
            # method, which keeps what the run produced, is not.
            with signals.interruptible():
                while status is None:
                    self._report(handle, handle.progress.due() if handle.progress else None)
                    if handle.process.exited(max(0.0, min(1.0, deadline - time.time()))):
                        status = COMPLETED  # or FAILED: known once end() has reaped it
                    elif time.time() >= deadline:
                        handle.process.stop(TERMINATE_GRACE_S)
                        status = TIMED_OUT
                        reason = (f"the run exceeded max_run ({handle.run.max_run} s) and"
                                  " was stopped")
        except KeyboardInterrupt as exc:
            # Ctrl-C, SIGTERM or SIGHUP (signals.py): stop the group, keep what it left.
            with signals.deferred():
                handle.process.stop(TERMINATE_GRACE_S)
                self._end(handle)
                result = self._result(handle, INTERRUPTED, interrupted_reason(exc))
            raise RunInterrupted(result) from None
        except BaseException:
            # A pytest timeout or the like: leave no training process behind.
            handle.process.stop(TERMINATE_GRACE_S)
            self._end(handle)
            raise
        with signals.deferred():
            self._end(handle)
            if status != TIMED_OUT:
                status = COMPLETED if handle.process.returncode == 0 else FAILED
                # success/failure files exactly as the toolkit leaves them after the script
                # (Hosts write each host's as it ends)
                if handle.hosts is None:
                    handle.tree.record_exit(handle.process.returncode)
            if status == FAILED:
                reason = self._failure_reason(handle)
            return self._result(handle, status, reason)

    def finished(self, handle: LocalHandle) -> bool:
        """Whether the run's program has exited, without waiting: wait() then returns
        at once. For searches that watch several runs at a time (local_tuning.py)."""
        return handle.process.exited(0)

    def stop(self, handle: LocalHandle) -> None:
        handle.process.stop(TERMINATE_GRACE_S)

    def _end(self, handle: LocalHandle) -> None:
        """After the script exited: nothing of the run left running (what it started dies
        with it, as a container's processes do), its whole log read, the last progress
        line shown."""
        handle.process.end()
        # Once the group is gone nobody writes the pipe: only what is buffered is left. (A
        # leader that could not be reaped still holds it: what the log has is kept.)
        if handle.reader is not None:
            handle.reader.join(timeout=0.5 if handle.process.stuck else READER_DRAIN_S)
        self._report(handle, handle.progress.last() if handle.progress else None)

    def _report(self, handle: LocalHandle, line: str | None) -> None:
        # Called on the waiting thread only: the terminal is pytest's main thread's.
        if line is not None and self.progress is not None:
            self.progress(line)

    def _failure_reason(self, handle: LocalHandle) -> str:
        if handle.hosts is not None:
            return handle.hosts.failure_reason()
        code = handle.process.returncode
        written = ""
        if handle.tree.failure_file.is_file():
            written = handle.tree.failure_file.read_text(errors="replace").strip()
        ended = exit_text(code)
        # The script's own reason, else the toolkit's message that record_exit wrote.
        return f"{written}\n({ended})" if written else ended

    def _result(self, handle: LocalHandle, status: str, reason: str) -> RunResult:
        if handle.process.stuck:  # a leader that could not be reaped: said with any outcome
            reason = f"{reason}; {handle.process.stuck}" if reason else handle.process.stuck
        hosts = handle.hosts
        if hosts is not None:
            series = extract(hosts.metric_lines(), handle.run.metric_definitions)
        else:
            with open(handle.log_path, encoding="utf-8", errors="replace") as log:
                series = extract(log, handle.run.metric_definitions)
        return RunResult(
            status=status,
            artifact_dir=handle.tree.root if hosts is None else hosts.attempt_dir,
            log_path=handle.log_path,
            model_dir=handle.tree.model_dir if hosts is None else hosts.model_dir,
            final_metrics=final_values(series),
            metric_series=series,
            failure_reason=reason,
            exit_code=handle.process.returncode,
            started_at=handle.started_at,
            ended_at=time.time(),
            backend=self.name,
            instance_type="local",
            job_name=handle.job_name,
        )



def thread_share(environ=None, hosts: int = 1) -> dict[str, str]:
    """Under pytest-xdist, N local runs share the machine, and a run on several hosts runs
    that many processes: give each host process its share of the cores (OMP_NUM_THREADS,
    which torch's intra-op thread count follows), unless the user set it. Two runs each
    using every core were 2-6x slower per epoch here than two runs using one core each."""
    environ = os.environ if environ is None else environ
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers * hosts <= 1 or "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, contract.cpu_cores() // (workers * hosts)))}
