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

A signal interrupts only where stopping loses nothing: while a backend waits for a run
(`interruptible()`), or, outside pytest-xdist, between runs. While an item prepares its runs,
finishes one, saves and records it (`deferred()`), a signal, Ctrl-C included, is only noted;
the run then ends as it would have, keeps its result, and the session ends right after it.
Once the session is ending (its stop, save and summary steps), a signal is ignored so that
it cannot cut them short, but only once: a second one ends pytest at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

HANDLED = ("SIGTERM", "SIGHUP")

# Process-wide, as Python's signal handlers are: where the main thread is now.
OPEN, DEFERRED, INTERRUPTIBLE = "open", "deferred", "interruptible"
_mode = OPEN
_noted: str | None = None  # a signal that came while DEFERRED


def noted() -> str | None:
    """The signal (e.g. "SIGTERM", "SIGINT") noted while deferred, if any."""
    return _noted


def interrupt(name: str | None) -> KeyboardInterrupt:
    """The KeyboardInterrupt a signal raises: it names the signal, Ctrl-C's says nothing."""
    return KeyboardInterrupt("" if name in (None, "SIGINT") else name)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A signal during the block is noted (noted()), not raised; Ctrl-C too."""
    with _in(DEFERRED):
        yield


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A signal during the block raises KeyboardInterrupt, as Ctrl-C does; one noted before
    it raises on entry."""
    with _in(INTERRUPTIBLE):
        if _noted is not None and _main_thread():
            raise interrupt(_noted)
        yield


@contextlib.contextmanager
def _in(mode: str) -> Iterator[None]:
    global _mode
    if not _main_thread():  # only the main thread gets signals
        yield
        return
    previous = _mode
    _mode = mode
    _follow_sigint()
    try:
        yield
    finally:
        _mode = previous
        _follow_sigint()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _note(signum: int, frame) -> None:
    global _noted
    if _noted is None:
        _noted = signal.Signals(signum).name


def _follow_sigint() -> None:
    """Ctrl-C is Python's own KeyboardInterrupt: while deferred, it is noted instead. Left
    alone when somebody else set SIGINT's handler."""
    current = signal.getsignal(signal.SIGINT)
    if _mode == DEFERRED and current is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note)
    elif _mode != DEFERRED and current is _note:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Interruption:
    """The handlers of one pytest session: installed at configure, restored at unconfigure."""

    def __init__(self, forward: Callable[[int], bool] | None = None, worker: bool = False):
        # forward(signum) passes the signal on and says whether anyone took it (xdist).
        self.forward = forward
        # An xdist worker is interrupted only while a run is awaited; between runs the
        # signal is noted, and the next item starts nothing and stops the worker, which
        # xdist would otherwise take for a crash and replace.
        self.worker = worker
        self._ending = False
        self._ignored = 0  # signals ignored since the session began ending
        self._previous: dict[int, object] = {}

    @property
    def received(self) -> str | None:
        """The first signal of this session (SIGINT: a Ctrl-C noted while deferred)."""
        return _noted

    def install(self) -> None:
        global _noted
        # Python runs handlers in the main thread only, and only it may set them.
        if not _main_thread():
            return
        _noted = None
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
        """From here on pytest stops jobs, saves evidence and prints the summary: a signal
        now would only cut that short, so the first one is ignored; a second ends pytest."""
        self._ending = True

    def _handle(self, signum: int, frame) -> None:
        global _noted
        name = signal.Signals(signum).name
        if self._ending:
            # The session is ending: the first signal must not cut short the saving of what
            # was interrupted (CI sends one SIGTERM); somebody who insists gets their way.
            self._ignored += 1
            if self._ignored < 2:
                return
            raise KeyboardInterrupt(name)
        first = _noted is None
        if first:
            _noted = name
        if first and self.forward is not None and self.forward(signum):
            return  # the workers end, and xdist ends the session; a second signal forces
        if _mode == DEFERRED or (self.worker and _mode == OPEN):
            return  # noted: acted on once the run is safe (plugin.py, the backends)
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
