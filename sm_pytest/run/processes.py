"""A training program in a process group of its own that dies with pytest, however pytest
dies, and leaves nothing behind when it ends: the one place that starts and kills one.

Both the local backend and the emulator's training jobs use it. The program gets a process
group (and session) of its own, so that a timeout, a stop or Ctrl-C can end it and
everything it started (DataLoader workers, a shell's commands); that also means no signal
sent to pytest reaches it. A watchdog covers pytest's death: `sh` blocked on a pipe only
pytest holds, which kills the whole group when the pipe closes, as the kernel closes it when
pytest dies, even by SIGKILL. It works from any thread and on any POSIX system, and covers
the program's children too, so no parent-death signal is set: that would need a preexec_fn,
which Python documents as unsafe in a threaded parent (an xdist worker, the emulator).

A group is not the whole tree, though: a launcher may put its workers in sessions of their
own (torchrun does: torch.distributed.elastic SubprocessHandler starts each worker with
start_new_session=True), and a killpg of the launcher's group never reaches them. So on
Linux every signal goes to the whole tree: the leader's descendants, collected through
/proc/<pid>/task/*/children while the leader lives (its children are reparented once it
dies), each remembered with its start time so that it is still found, and never mistaken
for a reused pid, after the leader is gone; every distinct process group among them gets
the signal, and SIGKILL also goes to each pid, after a SIGSTOP and a second look at the
tree so that nothing forks past it. The watchdog's shell walks /proc the same way. Without
/proc (macOS) only the group is killed, as before: a worker in a session of its own
outlives a stop there.

Why not PR_SET_CHILD_SUBREAPER: it only adopts orphans for an ancestor of the program. On
pytest itself, every orphan of every run would become pytest's child, to be reaped by code
(subprocess, multiprocessing) that does not expect foreign children; in a shim between
pytest and the program, it costs an interpreter per host, signal forwarding and exit-status
translation, and the shim's own SIGKILL orphans the tree again. Walking /proc while the
leader lives covers every stop we make; what a launcher orphans before we stop it (one that
crashes and leaves its workers) is killed only if we saw it earlier.

The group id is the leader's pid. It is signalled only while the leader is unreaped (alive
or a zombie), so the number cannot have been taken by another group meanwhile: the leader
is awaited without reaping it (a pidfd, else waitid's WNOWAIT) and reaped last, in end().
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time

# When the pipe closes: on Linux, collect the tree (see the module's docstring), SIGSTOP it
# so that nothing forks past us, collect again, then SIGKILL every pid and every group led
# by one; then the leader's group (the whole of it without /proc).
_WATCHDOG = r"""read _ignored
tree() {
  todo=$1
  while [ -n "$todo" ]; do
    next=
    for p in $todo; do next="$next $(cat /proc/$p/task/*/children 2>/dev/null)"; done
    todo=$(echo $next)
    all="$all $todo"
  done
}
all=
if [ -d "/proc/$1/task" ]; then
  tree "$1"
  [ -n "$all" ] && kill -s STOP $all 2>/dev/null
  tree "$1"
  for p in $all; do kill -s KILL -- "-$p" 2>/dev/null; done
  [ -n "$all" ] && kill -s KILL $all 2>/dev/null
fi
kill -s KILL -- "-$1" 2>/dev/null
exit 0"""
_POLL_S = 0.05  # where neither a pidfd nor waitid exists
# How long end() waits to reap a leader that was SIGKILLed: one stuck in the kernel (a GPU
# driver or NFS hang) never exits, and pytest must not hang with it.
REAP_S = 10.0


def _stat(pid: int) -> tuple[int, str] | None:
    """(process group, start time) of a live process from /proc/<pid>/stat; None when it is
    gone, a zombie, or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command: state, ppid, pgrp, ... starttime is field 22 of proc(5), [19] here.
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[2]), fields[19]


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, through the children files of each of its threads
    (a child belongs to the thread that forked it); [] without /proc."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(k) for k in children.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


class Watchdog:
    """`sh` blocked on a pipe; when the pipe closes (end() closed it, or pytest died), it
    kills the group. In a session of its own, so that a terminal's Ctrl-C does not kill it
    before it has done its job."""

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
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class Group:
    """One started program and its process group."""

    def __init__(self, command: list[str], **popen_kwargs):
        self.process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
        self.pid = self.process.pid
        self.watchdog: Watchdog | None = None
        if os.path.exists("/bin/sh"):
            with contextlib.suppress(OSError):
                self.watchdog = Watchdog(self.pid)
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self.pid)
        self._exited = False
        self._ended = False
        # Every descendant seen, with its start time: a pid whose start time differs later
        # is another process that reused the number.
        self._seen: dict[int, str] = {}

    @property
    def returncode(self) -> int | None:
        """Known once end() has reaped the leader."""
        return self.process.returncode

    @property
    def stuck(self) -> str:
        """Why end() could not reap the leader, or "" if it did (or was not called)."""
        if self.process.returncode is not None or not self._ended:
            return ""
        return (f"process {self.pid} did not exit within {REAP_S:.0f} s of SIGKILL (stuck in"
                " the kernel: a GPU driver or NFS hang?) and was left behind")

    def exited(self, timeout: float = 0.0) -> bool:
        """Whether the leader has exited, waiting up to `timeout` seconds; never reaps it."""
        if self._exited or self.process.returncode is not None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            if self._pidfd is not None:
                # poll, not select: select refuses a descriptor numbered 1024 or more
                poller = select.poll()
                poller.register(self._pidfd, select.POLLIN)
                self._exited = bool(poller.poll(max(0.0, timeout) * 1000))
                return self._exited
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except (AttributeError, ChildProcessError):
                # No waitid here: reaping is the only way to know; the group id is then
                # signalled only while members hold it (see the module's docstring).
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout)
                return self.process.returncode is not None
            if info is not None:
                self._exited = True
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_S, left))

    def exit_status(self) -> int | None:
        """The leader's exit status once it has exited (negative: the signal that ended it),
        read without reaping it (waitid with WNOWAIT), so that its group id is not reused
        before end(); None while it runs, or where it cannot be read before end()."""
        if self.process.returncode is not None:
            return self.process.returncode
        if not self.exited():
            return None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except (AttributeError, ChildProcessError, OSError):
            return None
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def stop(self, grace: float) -> None:
        """SIGTERM to the tree, SIGKILL to all of it after `grace` seconds (or once the
        leader and every descendant seen have exited), at once when the leader has exited
        or `grace` is 0."""
        if grace > 0 and not self.exited():
            self.signal(signal.SIGTERM)
            self.settled(grace)
        self.signal(signal.SIGKILL)

    def settled(self, timeout: float = 0.0) -> bool:
        """Whether the leader and every descendant seen (at the last signal) have exited,
        waiting up to `timeout` seconds: a launcher may exit before its workers do, and
        they get the rest of a grace. Never reaps the leader."""
        deadline = time.monotonic() + timeout
        if not self.exited(timeout):
            return False
        while self._alive():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_S, left))
        return True

    def _alive(self) -> list[int]:
        """The descendants seen that still live, after looking at the tree again while the
        leader lives (see the module's docstring)."""
        if self.process.returncode is None:
            for pid in _descendants(self.pid):
                stat = _stat(pid)
                if stat is not None:
                    self._seen.setdefault(pid, stat[1])
        alive = []
        for pid, started in list(self._seen.items()):
            stat = _stat(pid)
            if stat is None or stat[1] != started:
                del self._seen[pid]  # gone, or the number is another process's by now
            else:
                alive.append(pid)
        return alive

    def signal(self, sig: int) -> None:
        """`sig` to the leader's group and, on Linux, to every group among its descendants;
        SIGKILL to each descendant as well. A SIGTERM goes once to each group, not to each
        pid too: a worker's handler (a checkpoint on SIGTERM) must not run twice."""
        if sig == signal.SIGKILL:
            # Freeze the tree so that nothing forks between the look and the kill.
            for pid in self._alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
        pids = self._alive()
        if self.process.returncode is None:  # reaped: the number may be another group's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        own = os.getpgrp()
        groups = {stat[0] for stat in map(_stat, pids) if stat is not None}
        for group in groups - {self.pid, own, 0}:
            # Led by a live descendant (or joined from one): never a group outside the tree,
            # as the leader's session is its own and a group cannot cross sessions.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        if sig == signal.SIGKILL:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def end(self) -> int | None:
        """After the leader exited: kill what it left in its group, release the watchdog,
        reap the leader. Safe to call more than once; returns the exit status, None when the
        leader could not be reaped within REAP_S (see `stuck`)."""
        self._ended = True
        self.stop(0.0)
        if self.watchdog is not None:
            self.watchdog.release()
            self.watchdog = None
        try:
            return self.process.wait(timeout=REAP_S)
        except subprocess.TimeoutExpired:
            return None  # the watchdog is released: nothing more to do for it
        finally:
            if self._pidfd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._pidfd)
                self._pidfd = None
