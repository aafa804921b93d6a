"""The in-process reaper: PID 1's duty without a shim (``--no-shim``) or as a subreaper.

Orphans are re-parented to us, and nobody waits for them: they stay zombies until we do. The
hard part is reaping them without stealing a status that asyncio's child watcher, libuv or a
user's ``subprocess`` call is about to collect (PID1.md §0: ``Process.wait()`` returns 255 or
hangs on uvloop, ``Popen.wait()`` reports 0). Hence the rules, each protecting something:

* never ``waitpid(-1)``: reap one known pid at a time with ``waitpid(pid, WNOHANG)``;
* discover children from ``/proc/self/task/<leader>/children`` only: orphans are re-parented
  to the leader thread, while children forked by other threads (``asyncio.to_thread`` running
  ``subprocess.run``, watcher threads) are listed under their own thread, so they are never seen;
* skip the pids the supervisor owns, recorded at its single spawn chokepoint (``spawning()`` +
  ``own()``); and while a spawn is in flight, skip every unknown zombie, which may be that new
  child before ``own()`` ran;
* reap a zombie only once it has been one for ``grace`` seconds: a synchronous ``Popen`` on the
  loop thread is usually waited on by then. This is a heuristic; a later ``wait()`` loses.

When to look (uvloop refuses a SIGCHLD handler, so nothing may depend on one): when the
supervisor says one of its children exited (``kick()``), when an adopted live orphan exits (a
pidfd per orphan, watched by the loop), on SIGCHLD where the loop allows a handler (asyncio),
and on a slow timer as a safety net for orphans that come and go between two looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

from .shim import describe_status

log = logging.getLogger("asyncsup.reaper")

_Key = tuple[int, int]  # (pid, start time in clock ticks): a pid is reused, this pair is not


@dataclass(frozen=True)
class ReaperStats:
    reaped: int  # orphans reaped since start
    last_pid: int | None  # the last orphan reaped, and how it ended
    last_status: str | None
    owned: int  # our own children right now (never touched)
    watched: int  # live orphans whose exit we watch through a pidfd
    waiting: int  # zombies seen but younger than grace, or seen during a spawn


class Reaper:
    """Reaps orphans re-parented to this process while leaving the supervisor's children alone."""

    def __init__(self, *, grace: float = 0.1, interval: float = 1.0) -> None:
        self.grace = grace
        self.interval = interval
        self._owned: set[int] = set()
        self._spawns_in_flight = 0
        self._zombie_since: dict[_Key, float] = {}
        self._pidfds: dict[_Key, int] = {}
        self._wake = asyncio.Event()
        self._reaped = 0
        self._last: tuple[int, str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        s = self.statistics()
        running = "running" if self._loop is not None else "not running"
        return (
            f"<Reaper {running}, {s.reaped} orphans reaped, {s.owned} own children, "
            f"{s.watched} live orphans watched, {s.waiting} zombies waiting>"
        )

    # -- what the supervisor tells us -------------------------------------------------------------

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Wrap every spawn in this: unknown zombies are left alone until own() has run."""
        self._spawns_in_flight += 1
        try:
            yield
        finally:
            self._spawns_in_flight -= 1
            if self._spawns_in_flight == 0 and self._zombie_since:
                self.kick()  # zombies skipped during the spawn may be orphans after all

    def own(self, pid: int) -> None:
        """This pid is ours: asyncio waits for it, we never touch it."""
        self._owned.add(pid)

    def disown(self, pid: int) -> None:
        """asyncio has reported this pid's exit: forget it, its number may be reused."""
        self._owned.discard(pid)

    def kick(self) -> None:
        """One of our children exited, perhaps leaving orphans: look soon. Loop thread only."""
        self._wake.set()

    def statistics(self) -> ReaperStats:
        last_pid, last_status = self._last if self._last else (None, None)
        return ReaperStats(
            reaped=self._reaped,
            last_pid=last_pid,
            last_status=last_status,
            owned=len(self._owned),
            watched=len(self._pidfds),
            waiting=len(self._zombie_since),
        )

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Reap orphans until cancelled."""
        self._loop = asyncio.get_running_loop()
        _warn_if_blind()
        try:
            with self._sigchld_trigger(self._loop):
                while True:
                    timeout = self._sweep(time.monotonic())
                    with anyio.move_on_after(timeout):
                        await self._wake.wait()
                    self._wake.clear()
        finally:
            for key in list(self._pidfds):
                self._unwatch(key)
            self._loop = None

    @contextlib.contextmanager
    def _sigchld_trigger(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """On asyncio, wake on SIGCHLD; uvloop refuses (it needs SIGCHLD itself): do without."""
        try:
            loop.add_signal_handler(signal.SIGCHLD, self.kick)
        except (RuntimeError, ValueError, NotImplementedError):
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)

    def _sweep(self, now: float) -> float:
        """Look at every child once; reap old unknown zombies; return the seconds until the next."""
        seen: set[_Key] = set()
        for pid in _children():
            if pid in self._owned:
                continue
            stat = _stat(pid)
            if stat is None:
                continue
            key = (pid, stat[1])
            seen.add(key)
            if stat[0] == "Z":
                self._unwatch(key)  # a pidfd stays readable: it would wake us in a loop
                self._zombie(key, now)
            else:
                self._watch(key)
        self._forget_all_but(seen)
        return self._next_look(now)

    def _zombie(self, key: _Key, now: float) -> None:
        since = self._zombie_since.setdefault(key, now)
        if self._spawns_in_flight or now - since < self.grace:
            return
        self._reap(key)

    def _reap(self, key: _Key) -> None:
        pid = key[0]
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # someone else waited for it after all
            reaped = 0
        self._zombie_since.pop(key, None)
        self._unwatch(key)
        if reaped != pid:
            return
        self._reaped += 1
        self._last = (pid, describe_status(status))
        log.info("reaped orphan pid %d (%s)", pid, self._last[1])

    def _next_look(self, now: float) -> float:
        if not self._zombie_since:
            return self.interval
        if self._spawns_in_flight:
            return self.interval  # spawning() kicks us when the spawn is over
        oldest = min(self._zombie_since.values())
        return min(self.interval, max(0.0, oldest + self.grace - now))

    def _forget_all_but(self, seen: set[_Key]) -> None:
        """Drop what we knew about children that are gone (reaped by their real waiter)."""
        for key in [k for k in self._zombie_since if k not in seen]:
            del self._zombie_since[key]
        for key in [k for k in self._pidfds if k not in seen]:
            self._unwatch(key)

    # -- live orphans: a pidfd tells us when they exit -------------------------------------------

    def _watch(self, key: _Key) -> None:
        if key in self._pidfds or self._loop is None:
            return
        try:
            fd = os.pidfd_open(key[0])
        except (OSError, AttributeError):  # gone already, or no pidfds: the timer covers it
            return
        self._pidfds[key] = fd
        self._loop.add_reader(fd, self.kick)

    def _unwatch(self, key: _Key) -> None:
        fd = self._pidfds.pop(key, None)
        if fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        os.close(fd)


def _children() -> list[int]:
    """The leader thread's children: where orphans land, and not where other threads' go."""
    try:
        with open(_children_file()) as f:
            return [int(pid) for pid in f.read().split()]
    except FileNotFoundError:  # kernel without CONFIG_PROC_CHILDREN; run() warned
        return []


def _warn_if_blind() -> None:
    if not os.path.exists(_children_file()):
        log.warning("cannot list children (no %s): orphans will not be reaped", _children_file())


def _children_file() -> str:
    return f"/proc/self/task/{os.getpid()}/children"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0], int(fields[19])
