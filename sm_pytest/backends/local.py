"""Run the training script as a local subprocess inside a replica of the SageMaker container
contract (see contract.py), so the same script runs here and on SageMaker unchanged."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import contract
from ..artifacts import write_json_atomic
from ..metrics import extract, final_values
from ..spec import RunSpec
from .base import COMPLETED, FAILED, TIMED_OUT, RunResult

# How long a run gets to exit after SIGTERM before the whole group is SIGKILLed.
TERMINATE_GRACE_S = 5.0
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


class RunSetupError(Exception):
    """The run could not be started; phrased for the user."""


@dataclass
class LocalHandle:
    run: RunSpec
    tree: contract.ContainerTree
    process: subprocess.Popen
    reader: threading.Thread
    log_path: Path
    started_at: float
    job_name: str


def job_name_for(run: RunSpec, attempt_dir: Path) -> str:
    raw = f"{run.experiment}-{run.folder}-{attempt_dir.name}"
    return _JOB_NAME_UNSAFE.sub("-", raw).strip("-")[:63]


def _pump(stream, log_path: Path, echo: Callable[[str], None] | None) -> None:
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        for line in iter(stream.readline, ""):
            log.write(line)
            if echo is not None:
                echo(line)
    stream.close()


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the script and everything it started (DataLoader workers, shells...)."""
    for sig, grace in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children that ignored SIGTERM may linger in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


class LocalBackend:
    name = "local"

    def __init__(self, echo: Callable[[str], None] | None = None,
                 extra_env: dict[str, str] | None = None):
        self.echo = echo
        self.extra_env = extra_env or {}

    def submit(self, run: RunSpec, attempt_dir: Path) -> LocalHandle:
        remote = [f"{ch} ({loc})" for ch, loc in run.inputs.items() if loc.startswith("s3://")]
        if remote:
            raise RunSetupError(
                f"{run.path}: input {', '.join(remote)} is on S3; a local run needs local"
                " folders. Use a local path, or run with --sm."
            )
        job_name = job_name_for(run, attempt_dir)
        job = contract.ContainerJob(
            job_name=job_name,
            program=run.entry_point,
            source_dir=run.source_dir,
            hyperparameters=run.hyperparameters,
            channels={name: Path(location) for name, location in run.inputs.items()},
            instance_type="local",
            region="",
        )
        try:
            tree = contract.prepare_container_tree(job, root=attempt_dir)
        except (OSError, ValueError) as exc:
            raise RunSetupError(f"{run.path}: cannot prepare the run: {exc}") from None
        env = tree.process_env()
        env["PYTHONUNBUFFERED"] = "1"  # the log must stream live, line by line
        for key, value in self.extra_env.items():
            env.setdefault(key, value)
        write_json_atomic(attempt_dir / "hyperparameters.json", run.hyperparameters)
        write_json_atomic(
            attempt_dir / "command.json",
            {"argv": tree.command, "cwd": str(tree.code_dir), "env": tree.env,
             "max_run": run.max_run},
        )
        log_path = attempt_dir / "train.log"
        prefix = f"[{run.name}] "
        echo = (lambda line: self.echo(prefix + line)) if self.echo else None
        process = subprocess.Popen(
            tree.command,
            cwd=tree.code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own process group, so we can stop all of it
        )
        reader = threading.Thread(target=_pump, args=(process.stdout, log_path, echo),
                                  daemon=True)
        reader.start()
        return LocalHandle(run, tree, process, reader, log_path, time.time(), job_name)

    def wait(self, handle: LocalHandle) -> RunResult:
        deadline = handle.started_at + handle.run.max_run
        status, reason = None, ""
        try:
            while status is None:
                try:
                    handle.process.wait(timeout=max(0.0, min(1.0, deadline - time.time())))
                except subprocess.TimeoutExpired:
                    if time.time() >= deadline:
                        _kill_group(handle.process)
                        status = TIMED_OUT
                        reason = (f"the run exceeded max_run ({handle.run.max_run} s) and was"
                                  " stopped")
                    continue
                status = COMPLETED if handle.process.returncode == 0 else FAILED
        except BaseException:
            # Ctrl-C or a pytest timeout: leave no training process behind.
            self.stop(handle)
            handle.reader.join(timeout=5)
            raise
        handle.reader.join(timeout=30)
        if status != TIMED_OUT:
            # success/failure files exactly as the toolkit leaves them after the script
            handle.tree.record_exit(handle.process.returncode)
        if status == FAILED:
            reason = self._failure_reason(handle)
        return self._result(handle, status, reason)

    def stop(self, handle: LocalHandle) -> None:
        if handle.process.poll() is None:
            _kill_group(handle.process)

    def _failure_reason(self, handle: LocalHandle) -> str:
        code = handle.process.returncode
        written = ""
        if handle.tree.failure_file.is_file():
            written = handle.tree.failure_file.read_text(errors="replace").strip()
        if code is not None and code < 0:
            exit_text = f"killed by signal {signal.Signals(-code).name}"
        else:
            exit_text = f"exit code {code}"
        # The script's own reason, else the toolkit's message that record_exit wrote.
        return f"{written}\n({exit_text})" if written else exit_text

    def _result(self, handle: LocalHandle, status: str, reason: str) -> RunResult:
        with open(handle.log_path, encoding="utf-8", errors="replace") as log:
            series = extract(log, handle.run.metric_definitions)
        return RunResult(
            status=status,
            artifact_dir=handle.tree.root,
            log_path=handle.log_path,
            model_dir=handle.tree.model_dir,
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



def thread_share(environ=None) -> dict[str, str]:
    """Under pytest-xdist, N local runs share the machine: give each its share of the cores
    (OMP_NUM_THREADS), unless the user set it. Two runs each using every core were 2-6x
    slower per epoch here than two runs using one core each."""
    environ = os.environ if environ is None else environ
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers <= 1 or "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
