"""SIGTERM and SIGHUP end a session the way Ctrl-C does.

CI runners, `timeout` and Kubernetes cancel with SIGTERM, a closed terminal sends SIGHUP.
Python's default for both is to die on the spot: no SageMaker job stopped, no local process
group killed, no evidence saved, no summary. The handler raises KeyboardInterrupt instead,
so pytest's own interrupted path runs (pytest_keyboard_interrupt, sessionfinish, the
terminal summary, exit code 2) and everything that already handles Ctrl-C handles these too.

Under pytest-xdist the controller runs no tests: it passes the signal on to its workers and
lets xdist end the session. A worker interrupts the run in flight, reports its item as an
error carrying the run's record, and stops (session.shouldstop); xdist then stops the
session and raises its own Interrupted (exit code 2). A second signal to the controller
stops it at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

HANDLED = ("SIGTERM", "SIGHUP")


class Interruption:
    """The handlers of one pytest session: installed at configure, restored at unconfigure."""

    def __init__(self, forward: Callable[[int], bool] | None = None, worker: bool = False):
        # forward(signum) passes the signal on and says whether anyone took it (xdist).
        self.forward = forward
        # An xdist worker is interrupted only while a run is in flight (busy); between runs
        # the signal is noted, and the next item starts nothing and stops the worker, which
        # xdist would otherwise take for a crash and replace.
        self.worker = worker
        self.busy = False
        self.received: str | None = None
        self._ending = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        # Python runs handlers in the main thread only, and only it may set them.
        if threading.current_thread() is not threading.main_thread():
            return
        for name in HANDLED:
            signum = getattr(signal, name, None)
            if signum is None:  # SIGHUP does not exist on Windows
                continue
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # e.g. SIGHUP under nohup: whoever started pytest wants it ignored
            with contextlib.suppress(OSError, ValueError):
                self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                # None: the previous handler was not set from Python; the default is.
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def session_ending(self) -> None:
        """From here on pytest stops jobs, saves evidence and prints the summary, all of it
        in seconds: a signal now would only cut that short, so it is ignored."""
        self._ending = True

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._ending:
            # The session is ending already: a second signal must not cut short the saving
            # of what the first one interrupted. SIGKILL remains for the impatient.
            return
        first = self.received is None
        self.received = name
        if first and self.forward is not None and self.forward(signum):
            return  # the workers end, and xdist ends the session; a second signal forces
        if self.worker and not self.busy:
            return
        self._ending = True
        raise KeyboardInterrupt(name)


def xdist_workers(config) -> Callable[[int], bool] | None:
    """A function sending a signal to every pytest-xdist worker process, True if it reached
    one (False when this session has none). None in a worker itself."""
    if hasattr(config, "workerinput"):
        return None

    def forward(signum: int) -> bool:
        reached = False
        for pid in _worker_pids(config):
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
                reached = True
        return reached

    return forward


def _worker_pids(config) -> list[int]:
    """The pids of xdist's local (popen) workers. execnet keeps each one's subprocess.Popen
    on its gateway; xdist offers no public way, so anything unexpected gives [] and the
    controller then stops at once, as on Ctrl-C."""
    dsession = config.pluginmanager.get_plugin("dsession")
    group = getattr(getattr(dsession, "nodemanager", None), "group", None)
    pids = []
    for gateway in list(group or []):
        popen = getattr(getattr(gateway, "_io", None), "popen", None)
        pid = getattr(popen, "pid", None)
        if isinstance(pid, int) and popen.poll() is None:
            pids.append(pid)
    return pids
