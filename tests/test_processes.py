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
# Without /proc (macOS) a stop kills the group only (processes.py): a worker in a session of
# its own is out of its reach there.
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="the process tree is read from /proc")


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


def test_the_exit_status_is_read_before_the_program_is_reaped():
    running = Group([sys.executable, "-c", "import time; time.sleep(30)"])
    assert running.exit_status() is None
    running.stop(0.0)
    assert running.exited(timeout=10)
    assert running.exit_status() == -signal.SIGKILL
    running.end()

    failed = Group([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.exited(timeout=10)
    assert failed.exit_status() == 3
    assert failed.returncode is None  # still not reaped
    assert failed.end() == 3 and failed.exit_status() == 3


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


# torchrun's shape (torch.distributed.elastic SubprocessHandler: start_new_session=True): a
# launcher whose worker is in a session, so a process group, of its own. The worker ignores
# SIGTERM, as one that saves a checkpoint for longer than the grace; the launcher ignores it
# too ("ignore") or exits at once, leaving its worker behind ("exit").
LAUNCHER = """
import os, signal, subprocess, sys
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
worker = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1]],
                          start_new_session=True)
worker.wait()
"""
WORKER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def _launch(tmp_path, mode="ignore") -> tuple[Group, int]:
    worker_file = tmp_path / "worker.pid"
    group = Group([sys.executable, "-c", LAUNCHER, str(worker_file), mode, WORKER])
    deadline = time.monotonic() + 30
    while not worker_file.exists():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    worker = int(worker_file.read_text())
    assert os.getsid(worker) == worker != os.getsid(group.pid)  # out of reach of killpg
    return group, worker


def _really_gone(pid: int, within: float = 5.0) -> bool:
    # A killed orphan may stay a zombie until init reaps it: dead all the same.
    from conftest import process_alive

    deadline = time.monotonic() + within
    while process_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # leave nothing behind, then fail
            return False
        time.sleep(0.05)
    return True


@needs_proc
def test_stop_with_grace_kills_a_worker_in_a_session_of_its_own(tmp_path):
    group, worker = _launch(tmp_path)
    started = time.monotonic()
    group.stop(grace=0.5)
    assert time.monotonic() - started < 5  # one grace, then SIGKILL to the whole tree
    assert group.end() == -signal.SIGKILL
    assert _really_gone(worker)


@needs_proc
def test_an_immediate_stop_kills_a_worker_in_a_session_of_its_own(tmp_path):
    # What the emulator's spot reclaim does (stop_hosts(hosts, 0.0)), and end().
    group, worker = _launch(tmp_path)
    group.stop(0.0)
    assert group.end() == -signal.SIGKILL
    assert _really_gone(worker)


@needs_proc
def test_a_worker_its_launcher_left_behind_on_sigterm_is_killed_after_the_grace(tmp_path):
    # The launcher exits on SIGTERM and its worker is reparented: the stop remembers it.
    group, worker = _launch(tmp_path, mode="exit")
    group.stop(grace=0.5)
    assert group.end() == 0
    assert _really_gone(worker)


@needs_proc
def test_the_watchdog_kills_a_worker_in_a_session_of_its_own_when_its_owner_dies(tmp_path):
    # The owner stands for pytest: SIGKILLed, it runs no handler; its watchdog is left.
    owner = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path[:0] = {sys.path!r}
from pathlib import Path
import test_processes
group, worker = test_processes._launch(Path({str(tmp_path)!r}))
print(group.pid, worker, flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(__file__))
    try:
        leader, worker = map(int, owner.stdout.readline().split())
    finally:
        owner.kill()
        owner.wait()
    assert _really_gone(leader) and _really_gone(worker)


@needs_proc
def test_settled_waits_for_the_workers_not_only_the_launcher(tmp_path):
    group, worker = _launch(tmp_path, mode="exit")
    group.signal(signal.SIGTERM)  # the launcher exits; its worker ignores it
    assert group.exited(timeout=10)
    assert not group.settled(timeout=0.3)
    group.stop(0.0)
    assert group.settled(timeout=5)
    assert group.end() == 0
    assert _really_gone(worker)
