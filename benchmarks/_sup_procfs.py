"""Read what a supervisor is doing from /proc, the same way for every supervisor.

Children are found by walking ``/proc/<pid>/task/*/children`` down from the launched pid, so
a wrapper or a PID-1 shim in between changes nothing. A child counts once it has exec'd the
program we look for (its ``comm`` is e.g. ``sleep``): before exec it is still a copy of the
supervisor and not a child that "exists" for the user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchTimeout(Exception):
    """A bounded wait ran out: the supervisor did not reach the state we waited for."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"gave up after {seconds:.0f} s waiting for {what}")


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.002,
    relative: float = 0.0,
) -> float:
    """Poll ``predicate`` until true; return the perf_counter time it was first seen true.

    Polling is the only way to watch another process's /proc; the interval bounds the error.
    With ``relative``, the interval grows to that fraction of the time waited so far (at most
    50 ms): listing 1,000 children every 5 ms contends with fork() on the kernel's task list
    and doubled supervisord's 1,000-child cold start, while a 2 % error costs nothing.
    """
    start = time.perf_counter()
    deadline = start + timeout
    while True:
        now = time.perf_counter()
        if predicate():
            return now
        if now > deadline:
            raise BenchTimeout(what, timeout)
        time.sleep(max(interval, min(0.05, relative * (now - start))))


def read_text(path: str) -> str | None:
    """The file's content, or None when the process (or thread) is already gone."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (threads may fork too)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tids:
        text = read_text(f"/proc/{pid}/task/{tid}/children")
        if text:
            found.extend(int(p) for p in text.split())
    return found


def comm(pid: int) -> str | None:
    text = read_text(f"/proc/{pid}/comm")
    return text.strip() if text is not None else None


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field, so index 0 is the state."""
    text = read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rindex(")") + 2 :].split()


def parent(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def is_zombie(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def cpu_ticks_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds, at CLK_TCK resolution."""
    fields = stat_fields(pid)
    if fields is None:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def minor_faults(pid: int) -> int:
    """Minor page faults of the whole process: fresh memory touched (buffer churn shows here)."""
    fields = stat_fields(pid)
    return int(fields[7]) if fields else 0


def cpu_exact_seconds(pid: int) -> float:
    """Sum of the live threads' on-CPU time from schedstat (nanoseconds, not 10 ms ticks).

    Used for the idle measure where the tick count is 0 or 1 over 15 s. Threads that ended
    during the window are missed; ``cpu_ticks_seconds`` is reported beside it for that reason.
    """
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return float("nan")
    for tid in tids:
        text = read_text(f"/proc/{pid}/task/{tid}/schedstat")
        if text:
            total += int(text.split()[0])
    return total / 1e9


def thread_ids(pid: int) -> set[str]:
    try:
        return set(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return set()


def rss_mb(pid: int) -> float:
    """VmRSS in MB (10^6 bytes)."""
    text = read_text(f"/proc/{pid}/status") or ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def pss_mb(pid: int) -> float:
    """Proportional set size in MB: shared pages split between the processes sharing them.

    Tells what a forked PID-1 shim really adds: its RSS counts the interpreter pages it shares
    copy-on-write with the supervisor it forked.
    """
    text = read_text(f"/proc/{pid}/smaps_rollup") or ""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


class Tree:
    """The processes under one launched pid, with the ones running ``program`` singled out.

    A pid seen running ``program`` is remembered: comm never changes back after exec, and pids
    are not reused within a run (pid_max is far above what a run spawns). Only new pids cost a
    read, so polling a fleet of 1,000 stays cheap.
    """

    def __init__(self, root: int, program: str) -> None:
        self.root = root
        self.program = program
        self.seen: set[int] = set()  # every pid ever found under root, for cleanup
        self._known: set[int] = set()  # pids known to run `program`

    def running(self) -> set[int]:
        """Pids under root currently running ``program`` (zombies included until reaped)."""
        found: set[int] = set()
        stack = [self.root]
        while stack:
            for pid in children(stack.pop()):
                self.seen.add(pid)
                if pid in self._known:
                    found.add(pid)
                elif comm(pid) == self.program:
                    self._known.add(pid)
                    found.add(pid)
                else:
                    stack.append(pid)
        return found

    def alive(self) -> set[int]:
        return {pid for pid in self.running() if not is_zombie(pid)}

    def supervisor_of(self, pid: int) -> int:
        """The process that owns a child: the asyncio process even when a shim is above it."""
        ppid = parent(pid)
        return ppid if ppid is not None else self.root


def our_children() -> list[int]:
    """Children of this harness; with the subreaper bit set, orphans of a dead supervisor too."""
    return children(os.getpid())


def tail_bytes(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except FileNotFoundError:
        return b""
