"""Starting a child and learning of its exit, the same way on asyncio and uvloop.

We fork with subprocess.Popen ourselves instead of the loop's subprocess API, because uvloop
ignores close_fds (reference/PID1.md) and, measured here, hands children inheritable copies of
their stdio pipes (fds ~17-19) that libuv never closes: case 22 of the PID-1 list failed on
uvloop only. Popen closes every fd but 0, 1 and 2 on both loops and keeps CPython's vfork fast
path. The exit is learned from a pidfd the loop watches (no thread, no SIGCHLD handler, which
uvloop refuses anyway); on a kernel without pidfds, one waiting thread per child.

Only the pid we spawned is ever waited for: never waitpid(-1), so nobody's status is stolen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._aio import Flag
from .runtime import ChildTracker

log = logging.getLogger("asyncsup.supervisor")


class ChildProcess:
    """A spawned process: its pid, and its returncode once it exited (negative = signal)."""

    def __init__(self, popen: subprocess.Popen[bytes], tracker: ChildTracker) -> None:
        self.pid = popen.pid
        self.returncode: int | None = None
        self._popen = popen
        self._tracker = tracker
        self._loop = asyncio.get_running_loop()
        self.exited = Flag()  # set once returncode is known
        self._watch()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited with {self.returncode}"
        return f"<ChildProcess {self.pid} {state}>"

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    def _watch(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (kernel < 5.3): a thread that waits
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
            return
        self._loop.add_reader(pidfd, self._on_pidfd, pidfd)

    def _on_pidfd(self, pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(self.pid, 0)  # readable pidfd: it exited, this does not block
        except ChildProcessError:  # someone else's waitpid(-1) took it (user code in our process?)
            log.error("pid %d: exit status was taken by another waitpid; reporting 255", self.pid)
            status = 255 << 8
        self._exited_with(status)

    def _wait_in_thread(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self._loop.call_soon_threadsafe(self._exited_with, status)

    def _exited_with(self, status: int) -> None:
        self.returncode = self._popen.returncode = os.waitstatus_to_exitcode(status)
        self._tracker.disown(self.pid)
        self._tracker.kick()  # it may have left orphans behind
        self.exited.set()


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | None,
    stdout: int | None,
    stderr: int | None,
    cwd: Path | None,
    env: Mapping[str, str],
    tracker: ChildTracker,
) -> ChildProcess:
    """Start argv in its own session (killpg then reaches its whole tree). Raises OSError.

    This is the single spawn chokepoint the orphan reaper relies on: the pid is owned before any
    reaper pass can see it, and disowned only once we have its status.
    """
    with tracker.spawning():
        popen = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        tracker.own(popen.pid)
    return ChildProcess(popen, tracker)


DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
