"""One local run on N hosts: N container trees, N host processes started together, driven
as one.

SageMaker runs the same container on every instance of a multi-instance job; here every
host is a process on this machine with its own /opt/ml tree. The attempt folder then holds:

    hosts/algo-N/    each host's tree (the same layout a single-host attempt has at its top)
    algo-N.log       each host's own output (CloudWatch keeps one stream per host)
    train.log        every host's lines in arrival order, each prefixed "[algo-N] "
    model/           every host's model dir merged in host-list order, a later host
                     overriding a same-named file: "SageMaker aggregates the result in a TAR
                     file" (docs, your-algorithms-training-algo-output), and the SDK's local
                     mode (local/image.py retrieve_artifacts) copies every host's model dir
                     over the last, "as the official SageMaker Training Service" does

Metrics come from every host's lines (SageMaker applies the metric regexes to the logs of
each machine: automatic-model-tuning-considerations), unprefixed, in arrival order.

One host failing fails the run and stops the others: on SageMaker the job fails when any
instance fails. Which failed host is blamed follows run/host_failure.py (the others get a
moment to finish failing; the first failure file written wins), as in the emulator.
``Hosts`` answers the calls the local backend makes on one process group (exited, stop,
end, returncode, stuck), so that max_run, Ctrl-C and SIGTERM stop every host through the
same code path as one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sm_pytest.run import artifacts, contract
from sm_pytest.run.host_failure import SETTLE_S, also_failed, blame_order, failure_mtime
from sm_pytest.run.processes import Group
from sm_pytest.run.progress import Progress

__all__ = ["HOSTS_DIR", "Host", "Hosts", "exit_text", "host_trees", "unprefixed"]

HOSTS_DIR = "hosts"
# Lines of a failed host's own log quoted in the reason when it left no reason of its own.
FAILED_HOST_TAIL = 10
_POLL_S = 0.05


def host_trees(job: contract.ContainerJob, attempt_dir: Path,
               rendezvous: contract.Rendezvous | None) -> list[tuple[str, contract.ContainerTree]]:
    """Every host's tree, under ``<attempt>/hosts/<host>``, in host-list order."""
    return [
        (host, contract.prepare_container_tree(job, attempt_dir / HOSTS_DIR / host,
                                               current_host=host, rendezvous=rendezvous))
        for host in contract.host_names(len(job.hosts))
    ]


def unprefixed(lines) -> Iterator[str]:
    """train.log's lines without their "[algo-N] " prefix."""
    for line in lines:
        if line.startswith("["):
            _, sep, rest = line.partition("] ")
            yield rest if sep else line
        else:
            yield line


@dataclass
class Host:
    name: str
    tree: contract.ContainerTree
    log_path: Path
    group: Group | None = None
    reader: threading.Thread | None = None
    returncode: int | None = None
    ended: bool = False
    own_reason: str = ""  # the script's own output/failure, when it wrote one
    finished: bool = False  # exited by itself (not stopped by us)
    seen_at: float = 0.0  # monotonic time it was seen exiting by itself
    written_at: float | None = None  # its own failure file's mtime, read before record_exit


@dataclass
class Hosts:
    """The host processes of one run, answering as one process group does."""

    attempt_dir: Path
    hosts: list[Host]
    grace: float  # SIGTERM to SIGKILL when one host failed and the others are stopped
    drain: float  # how long a log reader may take to drain its pipe once its host is gone
    echo: Callable[[str], None] | None = None
    progress: Progress | None = None
    log_path: Path = field(init=False)
    failed: Host | None = field(default=None, init=False)
    # The other hosts that failed by themselves, in blame order (run/host_failure.py).
    also: list[Host] = field(default_factory=list, init=False)

    def __post_init__(self):
        self.log_path = self.attempt_dir / "train.log"
        self._lock = threading.Lock()
        self._log = None
        self._merged = False
        self._settle_until: float | None = None

    @property
    def model_dir(self) -> Path:
        return self.attempt_dir / "model"

    # --- starting ---------------------------------------------------------------------

    def start(self, env_for: Callable[[contract.ContainerTree], Mapping[str, str]]) -> None:
        """Start every host, one right after another; if one cannot start, stop the ones
        that did and raise."""
        self._log = open(self.log_path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        try:
            for host in self.hosts:
                # Its own process group, which dies with pytest (processes.py).
                host.group = Group(
                    host.tree.command, cwd=host.tree.code_dir, env=dict(env_for(host.tree)),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    text=True, encoding="utf-8", errors="replace")
                host.reader = threading.Thread(target=self._pump, args=(host,), daemon=True)
                host.reader.start()
        except BaseException:
            self.stop(0.0)
            self.end()
            raise

    def _pump(self, host: Host) -> None:
        assert host.group is not None
        stream = host.group.process.stdout
        with open(host.log_path, "w", encoding="utf-8", buffering=1) as log:
            for line in iter(stream.readline, ""):
                log.write(line)
                self._line(host.name, line)
        stream.close()

    def _line(self, name: str, line: str) -> None:
        # One line whole per host: a last line without its newline gets one, or the next
        # host's line would continue it.
        text = f"[{name}] {line if line.endswith(chr(10)) else line + chr(10)}"
        with self._lock:
            if self._log is not None and not self._log.closed:
                self._log.write(text)
            if self.echo is not None:
                self.echo(text)
        if self.progress is not None:
            self.progress.feed(line)

    # --- as one group -----------------------------------------------------------------

    def _running(self) -> list[Host]:
        return [h for h in self.hosts if h.group is not None and not h.ended]

    def exited(self, timeout: float = 0.0) -> bool:
        """Whether the run is over: every host exited, or one failed (the others are then
        stopped at once). Waits up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for host in self._running():
                assert host.group is not None
                if host.group.exited():
                    self._finish(host)
            now = time.monotonic()
            failed = [h for h in self.hosts if h.finished and h.returncode != 0]
            if failed and self.failed is None:
                # The others get SETTLE_S to finish failing, so that a survivor's "connection
                # closed" does not take the blame from the host that caused it.
                if self._settle_until is None:
                    self._settle_until = now + SETTLE_S
                if not self._running() or now >= self._settle_until:
                    self.failed, *self.also = blame_order(
                        failed, written_at=lambda h: h.written_at, seen_at=lambda h: h.seen_at)
            if self.failed is not None:
                self.stop(self.grace)
                return True
            if not self._running():
                return True
            left = deadline - now
            if left <= 0:
                return False
            time.sleep(min(_POLL_S, left))

    def _finish(self, host: Host) -> None:
        """A host whose script ended by itself: reap it, and write its success or failure
        file as the toolkit does (trainer.train), the script's own reason winning."""
        assert host.group is not None
        tree = host.tree
        host.seen_at = time.monotonic()
        host.written_at = failure_mtime(tree.failure_file)  # before record_exit writes one
        if tree.failure_file.is_file():
            host.own_reason = tree.failure_file.read_text(errors="replace").strip()
        host.returncode = host.group.end()
        host.ended = host.finished = True
        if host.returncode is not None:
            tree.record_exit(host.returncode)

    def stop(self, grace: float) -> None:
        """SIGTERM to every host's group, SIGKILL to all of them once ``grace`` seconds have
        passed or all have exited: one grace for the run, not one per host."""
        running = [h.group for h in self._running() if h.group is not None]
        if grace > 0:
            for group in running:
                if not group.exited():
                    group.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for group in running:
                # settled, not exited: a launcher (torchrun) may exit before its workers
                group.settled(max(0.0, deadline - time.monotonic()))
        for group in running:
            group.signal(signal.SIGKILL)

    def end(self) -> int | None:
        """Reap every host, read every log to its end, merge the model dirs."""
        for host in self._running():
            assert host.group is not None
            host.returncode = host.group.end()
            host.ended = True
        # One deadline for every reader: their pipes drain in parallel, so waiting `drain`
        # for each in turn would let N stuck readers hold the run N times as long.
        deadline = time.monotonic() + self.drain
        stuck_deadline = time.monotonic() + 0.5
        for host in self.hosts:
            if host.reader is not None:
                stuck = host.group is not None and bool(host.group.stuck)
                until = stuck_deadline if stuck else deadline
                host.reader.join(timeout=max(0.0, until - time.monotonic()))
        with self._lock:
            if self._log is not None:
                self._log.close()
        self._merge_models()
        return self.returncode

    def _merge_models(self) -> None:
        if self._merged:
            return
        self._merged = True
        self.model_dir.mkdir(exist_ok=True)
        for host in self.hosts:  # host-list order: a later host overrides
            if host.tree.model_dir.is_dir():
                shutil.copytree(host.tree.model_dir, self.model_dir, symlinks=True,
                                dirs_exist_ok=True)

    @property
    def returncode(self) -> int | None:
        """The failed host's code; else 0 when every host exited 0; None while one is not
        reaped."""
        if self.failed is not None:
            return self.failed.returncode
        codes = [h.returncode for h in self.hosts]
        if any(code is None for code in codes):
            return None
        return next((code for code in codes if code != 0), 0)

    @property
    def stuck(self) -> str:
        return "; ".join(f"{h.name}: {h.group.stuck}" for h in self.hosts
                         if h.group is not None and h.group.stuck)

    # --- the outcome ------------------------------------------------------------------

    def failure_reason(self) -> str:
        """``algo-N: <its reason>``: the failed host's own failure file and its exit, or,
        when it left no reason, its exit and the tail of its own log (train.log's tail may
        be all the other hosts'); then ``; also failed: algo-M: ...`` for the other hosts
        that failed by themselves (run/host_failure.py)."""
        host = self.failed or next(
            (h for h in self.hosts if h.returncode not in (0, None)), None)
        if host is None:
            return ""
        others = also_failed([(h.name, h.own_reason or exit_text(h.returncode))
                              for h in self.also])
        ended = exit_text(host.returncode)
        if host.own_reason:
            return f"{host.name}: {host.own_reason}{others}\n({ended})"
        tail = artifacts.tail(host.log_path, FAILED_HOST_TAIL)
        if not tail:
            return f"{host.name}: {ended}{others}"
        return (f"{host.name}: {ended}{others}; the last lines of {host.log_path.name}:\n"
                + "\n".join(tail))

    def metric_lines(self) -> Iterator[str]:
        """Every host's lines, unprefixed, in arrival order (train.log without prefixes)."""
        if not self.log_path.is_file():
            return
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            yield from unprefixed(log)


def exit_text(code: int | None) -> str:
    """How a host process ended, for a failure reason: its exit code or the signal."""
    if code is not None and code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"
