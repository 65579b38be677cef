"""sm_pytest/run/processes.py: a program in a process group of its own, ended with everything
it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sm_pytest.run.processes import Group

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone_soon(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_finished_program_is_reaped_with_its_exit_status():
    group = Group([sys.executable, "-c", "raise SystemExit(3)"])
    assert group.exited(timeout=10)
    assert group.returncode is None  # exited() never reaps
    assert group.end() == 3
    assert group.returncode == 3
    assert group.stuck == ""
    assert group.end() == 3  # safe to call again


def test_the_program_gets_a_group_of_its_own():
    group = Group([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getpgid(group.pid) == group.pid != os.getpgid(0)
    finally:
        group.stop(0.0)
        group.end()


def test_stop_ends_the_program_and_what_it_started(tmp_path):
    child_file = tmp_path / "child.pid"
    group = Group(["/bin/sh", "-c", f"sleep 30 & echo $! > {child_file}; wait"],
                  stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (child_file.exists() and child_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(child_file.read_text())
    assert not group.exited()

    group.stop(grace=0.5)
    assert group.exited(timeout=10)
    assert group.end() in (-signal.SIGTERM, -signal.SIGKILL)
    assert _gone_soon(child)


def test_end_kills_what_the_program_left_behind(tmp_path):
    child_file = tmp_path / "child.pid"
    # The leader exits at once; its child would live on in the group without end().
    group = Group(["/bin/sh", "-c", f"sleep 30 & echo $! > {child_file}"])
    assert group.exited(timeout=10)
    child = int(child_file.read_text())
    assert group.end() == 0
    assert _gone_soon(child)


def test_the_watchdog_is_released_when_the_group_ends():
    group = Group([sys.executable, "-c", "pass"])
    watchdog = group.watchdog
    group.exited(timeout=10)
    group.end()
    assert group.watchdog is None
    if watchdog is not None:
        assert watchdog.process.poll() is not None


def test_signal_after_reaping_reaches_nobody():
    group = Group([sys.executable, "-c", "pass"])
    group.exited(timeout=10)
    group.end()
    group.signal(signal.SIGKILL)  # the number may be another group's by now: nothing is sent
    group.stop(1.0)
    assert group.returncode == 0
