"""Ctrl-C, SIGTERM and SIGHUP: the first stops the session at the next safe point, keeping
every finished run's result.json, tracking row and summary row; a second one stops it at once.

CI runners, `timeout` and Kubernetes cancel with SIGTERM, a closed terminal sends SIGHUP.
Python's default for those two is to die on the spot: no SageMaker job stopped, no local process
group killed, no evidence saved, no summary. Here all three raise KeyboardInterrupt where
that loses nothing, so pytest's own interrupted path runs (pytest_keyboard_interrupt,
sessionfinish, the terminal summary, exit code 2).

Where the first signal acts (one process-wide state, as Python's signal handlers are):
- OPEN (the default: collection, preparing a run, a plain Python test): at once.
- INTERRUPTIBLE (a backend awaits a run): at once; the backend stops the run and keeps
  what it left as an interrupted result.
- DEFERRED (a run ends, is saved, judged and recorded; the session's ending): noted only;
  whoever leaves such a block acts on received() at the next safe point.
Under pytest-xdist the controller runs no tests: it passes the first signal on to its
workers, and a second one stops it at once (xdist then ends the workers). A worker raises
only while INTERRUPTIBLE: elsewhere a KeyboardInterrupt would look like a crash to xdist, so
the worker stops after its item instead (session.shouldstop, plugin.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

HANDLED = ("SIGINT", "SIGTERM", "SIGHUP")
OPEN, DEFERRED, INTERRUPTIBLE = "open", "deferred", "interruptible"


class _State:
    def __init__(self, forward: Callable[[int], bool] | None = None, worker: bool = False):
        self.mode = OPEN
        self.ending = False  # pytest stops jobs, saves and summarises: nothing may cut it short
        self.received: list[str] = []  # the signals of this session, in order
        self.forward = forward  # passes a signal to xdist workers; True if one took it
        self.worker = worker
        self.previous: dict[int, object] = {}  # the handlers install() replaced
        self.outer: _State | None = None  # a pytester session's outer session


_state = _State()


def received() -> str | None:
    """The first signal of this session (e.g. "SIGTERM", "SIGINT"), if any."""
    return _state.received[0] if _state.received else None


def cause() -> str:
    """The first signal as a person names it: `SIGTERM`, `SIGHUP`, or `Ctrl-C`."""
    name = received()
    return "Ctrl-C" if name in (None, "SIGINT") else name


def interrupt(name: str | None) -> KeyboardInterrupt:
    """The KeyboardInterrupt a signal raises: it names the signal, Ctrl-C's says nothing."""
    return KeyboardInterrupt("" if name in (None, "SIGINT") else name)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A first signal during the block is only noted (received())."""
    with _in(DEFERRED):
        yield


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A signal during the block raises KeyboardInterrupt; one received before, on entry.
    Not once the session is ending."""
    with _in(INTERRUPTIBLE):
        if _state.mode == INTERRUPTIBLE and _state.received:
            raise interrupt(received())
        yield


def ending() -> None:
    """The session is ending (pytest_keyboard_interrupt, sessionfinish): from here on a
    first signal is only noted, whatever the backends do."""
    if _main_thread():
        _state.mode = DEFERRED
        _state.ending = True


@contextlib.contextmanager
def _in(mode: str) -> Iterator[None]:
    # Only the main thread gets signals; a plain assignment, so a signal at any point
    # finds one mode or the other.
    if not _main_thread() or _state.ending:
        yield
        return
    previous, _state.mode = _state.mode, mode
    try:
        yield
    finally:
        if not _state.ending:
            _state.mode = previous


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handle(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    _state.received.append(name)
    if len(_state.received) > 1 and not _state.worker:
        # Somebody insists: at once, wherever the session is. (Not a worker: it gets Ctrl-C
        # twice, from the terminal and from its controller, whose second signal ends it.)
        raise interrupt(name)
    if _state.forward is not None and _state.forward(signum):
        return  # the workers stop after their runs, and xdist ends the session
    if _state.mode == INTERRUPTIBLE or (_state.mode == OPEN and not _state.worker):
        raise interrupt(name)
    # noted: acted on at the next safe point (session.finish starts no other repeat;
    # plugin.py's pytest_runtest_protocol and pytest_sessionfinish stop the session)


def install(forward: Callable[[int], bool] | None = None, worker: bool = False) -> None:
    """The handlers of one pytest session, from configure to unconfigure."""
    global _state
    if not _main_thread():  # only the main thread may set handlers
        return
    outer, _state = _state, _State(forward, worker)
    _state.outer = outer
    for name in HANDLED:
        signum = getattr(signal, name, None)
        if signum is None:  # SIGHUP does not exist on Windows
            continue
        current = signal.getsignal(signum)
        if signum == signal.SIGINT and current not in (signal.default_int_handler, _handle):
            continue  # somebody else's Ctrl-C (a debugger, say): theirs
        if current is signal.SIG_IGN:
            continue  # e.g. SIGHUP under nohup: whoever started pytest wants it ignored
        with contextlib.suppress(OSError, ValueError):
            _state.previous[signum] = signal.signal(signum, _handle)


def uninstall() -> None:
    global _state
    if not _main_thread():
        return
    for signum, previous in _state.previous.items():
        with contextlib.suppress(OSError, ValueError, TypeError):
            # None: the previous handler was not set from Python; the default is.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    _state = _state.outer or _State()


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
