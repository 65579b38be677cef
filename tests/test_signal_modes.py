"""sm_pytest/run/signals.py in this process: where a first signal raises and where it is only
noted, and the second one that always raises. (tests/test_signals.py drives whole sessions.)"""

from __future__ import annotations

import signal
import threading
from types import SimpleNamespace

import pytest

from sm_pytest.run import signals

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals"),
    pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                       reason="only the main thread gets signals"),
]


@pytest.fixture
def handlers():
    """This test's own session handlers, the outer session's back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    signals.install()
    # Never send a real SIGTERM to pytest unless it is ours to catch.
    assert getattr(signal.getsignal(signal.SIGTERM), "__module__", "") == signals.__name__
    yield
    signals.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_interrupt_names_the_signal_but_not_ctrl_c():
    assert str(signals.interrupt("SIGTERM")) == "SIGTERM"
    assert str(signals.interrupt("SIGINT")) == ""
    assert str(signals.interrupt(None)) == ""


def test_nothing_received_reads_as_ctrl_c(handlers):
    assert signals.received() is None
    assert signals.cause() == "Ctrl-C"


def test_a_first_signal_raises_at_once_while_open(handlers):
    with pytest.raises(KeyboardInterrupt, match="SIGHUP"):
        signal.raise_signal(signal.SIGHUP)
    assert signals.received() == "SIGHUP"


def test_a_first_signal_is_noted_in_a_deferred_block_and_raised_on_the_next_wait(handlers):
    with signals.deferred():
        signal.raise_signal(signal.SIGTERM)
    assert (signals.received(), signals.cause()) == ("SIGTERM", "SIGTERM")
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), signals.interruptible():
        pytest.fail("a run must not start after the signal")


def test_a_second_signal_raises_even_in_a_deferred_block(handlers):
    with pytest.raises(KeyboardInterrupt), signals.deferred():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert signals.received() == "SIGTERM"


def test_once_ending_a_first_signal_is_only_noted(handlers):
    signals.ending()
    with signals.interruptible():
        signal.raise_signal(signal.SIGTERM)
    assert signals.received() == "SIGTERM"


def test_a_signal_ignored_by_whoever_started_pytest_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        signals.install()
        try:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        finally:
            signals.uninstall()
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_worker_forwards_nothing():
    assert signals.xdist_workers(SimpleNamespace(workerinput={})) is None
