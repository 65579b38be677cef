"""Run the training script as a local subprocess inside a replica of the SageMaker container
contract (see contract.py), so the same script runs here and on SageMaker unchanged."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import contract
from ..artifacts import write_json_atomic
from ..metrics import extract, final_values
from ..progress import Progress
from ..sagemaker import names
from ..spec import RunSpec
from .base import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    TIMED_OUT,
    RunInterrupted,
    RunResult,
    RunSetupError,
    interrupted_reason,
)

# How long a run gets to exit after SIGTERM before the whole group is SIGKILLed.
TERMINATE_GRACE_S = 5.0
__all__ = ["LocalBackend", "LocalHandle", "RunSetupError", "job_name_for", "thread_share"]


@dataclass
class LocalHandle:
    run: RunSpec
    tree: contract.ContainerTree
    process: subprocess.Popen
    reader: threading.Thread
    log_path: Path
    started_at: float
    job_name: str
    watchdog: Watchdog | None = None
    progress: Progress | None = None


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


# -- the run dies with pytest, even with SIGKILL ------------------------------------------
#
# The script runs in a process group of its own (so that a timeout or Ctrl-C can stop it and
# everything it started), which also means no signal sent to pytest reaches it. On Linux the
# script gets the parent-death signal; it fires when the *thread* that started it exits, so
# only a run started from the main thread (pytest's, and an xdist worker's) gets it. Its own
# children (DataLoader workers, a shell's commands) are not covered by it, and other systems
# have no such signal: a watchdog process waits on a pipe only pytest holds, and kills the
# whole group when the pipe closes, which the kernel does when pytest dies, however it dies.

_PR_SET_PDEATHSIG = 1
_WATCHDOG = 'read _ignored; kill -s KILL -- "-$1" 2>/dev/null; exit 0'


def _death_signal_setter() -> Callable[[], None] | None:
    """A preexec_fn giving the child SIGKILL when pytest's main thread dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved now, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # pytest died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


class Watchdog:
    """`sh` blocked on a pipe; when the pipe closes (pytest closed it after the run, or
    pytest died), it kills the run's process group. In a session of its own, so that a
    terminal's Ctrl-C does not kill it before it has done its job."""

    def __init__(self, group: int):
        read_end, self._write_end = os.pipe()  # not inheritable (PEP 446): only we hold it
        try:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHDOG, "sh", str(group)], stdin=read_end,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The run is over: let the watchdog sweep the group (children the script left
        behind) and exit."""
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def _watchdog(group: int) -> Watchdog | None:
    if not os.path.exists("/bin/sh"):
        return None
    try:
        return Watchdog(group)
    except OSError:
        return None


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
        progress = None
        if self.progress is not None:
            progress = Progress(run.name, run.metric_definitions,
                                show=[t.metric for t in run.expect])
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
            preexec_fn=_death_signal_setter(),
        )
        reader = threading.Thread(target=_pump,
                                  args=(process.stdout, log_path, echo, progress), daemon=True)
        reader.start()
        return LocalHandle(run, tree, process, reader, log_path, time.time(), job_name,
                           watchdog=_watchdog(process.pid), progress=progress)

    def wait(self, handle: LocalHandle) -> RunResult:
        deadline = handle.started_at + handle.run.max_run
        status, reason = None, ""
        try:
            while status is None:
                self._report(handle, handle.progress.due() if handle.progress else None)
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
        except KeyboardInterrupt as exc:
            # Ctrl-C, SIGTERM or SIGHUP (signals.py): stop the group, keep what it left.
            self._end(handle, timeout=5)
            result = self._result(handle, INTERRUPTED, interrupted_reason(exc))
            raise RunInterrupted(result) from None
        except BaseException:
            # A pytest timeout or the like: leave no training process behind.
            self._end(handle, timeout=5)
            raise
        self._end(handle, timeout=30)
        if status != TIMED_OUT:
            # success/failure files exactly as the toolkit leaves them after the script
            handle.tree.record_exit(handle.process.returncode)
        if status == FAILED:
            reason = self._failure_reason(handle)
        return self._result(handle, status, reason)

    def stop(self, handle: LocalHandle) -> None:
        if handle.process.poll() is None:
            _kill_group(handle.process)

    def _end(self, handle: LocalHandle, timeout: float) -> None:
        """After the run: nothing of it left running, its whole log read, the last
        progress line shown."""
        self.stop(handle)
        handle.reader.join(timeout=timeout)
        if handle.watchdog is not None:
            handle.watchdog.release()
        self._report(handle, handle.progress.last() if handle.progress else None)

    def _report(self, handle: LocalHandle, line: str | None) -> None:
        # Called on the waiting thread only: the terminal is pytest's main thread's.
        if line is not None and self.progress is not None:
            self.progress(line)

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
