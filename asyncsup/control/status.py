"""What `ctl status` and /metrics report about each process: its state, plus RSS and CPU from /proc.

The states are read on the loop (a consistent snapshot); /proc is read in a worker thread, because
for 1,000 children that is 1,000 file reads the loop should not wait for. RSS and CPU are those of the
process asyncsup started, not of its descendants (a `sh -c` wrapper shows the shell's own numbers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from ..supervisor.child import Child

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """Resources of one live process, from /proc/<pid>/stat."""

    rss: int  # bytes
    cpu: float  # seconds of user + system time
    start_ticks: int  # clock ticks after boot


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    program: str
    state: str
    pid: int | None
    since: float  # unix time of the last state change
    restarts: int
    last_exit: str | None  # "exit 1", "killed by SIGKILL", "could not start: ENOENT"
    exit_code: int | None  # the shell's view of the last exit: the code, or 128+signal
    rss: int | None
    cpu: float | None

    @property
    def uptime(self) -> float | None:
        return max(0.0, time.time() - self.since) if self.state == "RUNNING" else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "uptime": self.uptime}


def read_usage(pid: int | str) -> Usage | None:
    """None when the process is gone (or not ours to read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last.
    fields = raw[raw.rfind(b")") + 2 :].split()
    utime, stime, start, rss_pages = int(fields[11]), int(fields[12]), int(fields[19]), int(fields[21])
    return Usage(rss_pages * PAGE_SIZE, (utime + stime) / CLOCK_TICKS, start)


def _usages(pids: Sequence[int | None]) -> list[Usage | None]:
    return [read_usage(pid) if pid is not None else None for pid in pids]


async def process_status(children: Iterable[Child]) -> list[ProcessStatus]:
    """A snapshot of every child, with its /proc numbers read off the loop."""
    snapshot = [(child.program.name, child.info()) for child in children]
    usages = await anyio.to_thread.run_sync(_usages, [info.pid for _, info in snapshot])
    return [
        ProcessStatus(
            name=info.name,
            program=program,
            state=str(info.state),
            pid=info.pid,
            since=info.since,
            restarts=info.restarts,
            last_exit=str(info.last_exit) if info.last_exit is not None else None,
            exit_code=info.last_exit.shell_code if info.last_exit is not None else None,
            rss=usage.rss if usage else None,
            cpu=usage.cpu if usage else None,
        )
        for (program, info), usage in zip(snapshot, usages, strict=True)
    ]


def boot_time() -> float:
    """Unix time of the boot, to turn /proc start ticks into a start time."""
    with open("/proc/stat", "rb") as file:
        for line in file:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0
