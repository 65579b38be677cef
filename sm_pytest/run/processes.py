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

_WATCHDOG = 'read _ignored; kill -s KILL -- "-$1" 2>/dev/null; exit 0'
_POLL_S = 0.05  # where neither a pidfd nor waitid exists
# How long end() waits to reap a leader that was SIGKILLed: one stuck in the kernel (a GPU
# driver or NFS hang) never exits, and pytest must not hang with it.
REAP_S = 10.0


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

    def stop(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL to all of it after `grace` seconds, or at once when
        the leader has exited or `grace` is 0."""
        if grace > 0 and not self.exited():
            self.signal(signal.SIGTERM)
            self.exited(grace)
        self.signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        if self.process.returncode is not None:
            return  # reaped: the number may belong to another group by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

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
