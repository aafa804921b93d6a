"""Counters of `processes = N` consumers, reported to the `asyncsup run` that supervises them.

A consumer child (`asyncsup consume` started by consumer/service.py) finds the parent's control socket
in ASYNCSUP_REPORT_TO and sends its Worker's counters there every REPORT_INTERVAL seconds and once
more when it stops: one `report` request on a fresh connection, so a parent that is busy or gone
costs the child one failed connect, never a stalled handler. The parent keeps the last report of
each process and adds up a consumer's processes for `ctl status` and /metrics. Counters stay
monotonic across restarts: when a process name reports from a new pid, the old pid's last counters
are carried over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from asyncsup._proc import pid_exists
from asyncsup.errors import ControlError

if TYPE_CHECKING:
    from asyncsup.consumer.worker import Worker

log = logging.getLogger("asyncsup.consumer")

REPORT_TO = "ASYNCSUP_REPORT_TO"  # the environment variable: the parent's control socket
REPORT_INTERVAL = 2.0
REPORT_WAIT = 1.0  # for one report: a parent that does not answer by then is skipped this time
COUNTERS = ("handled", "failed", "retried", "released")


@dataclass(frozen=True)
class ConsumerTotals:
    """One consumer over everything it ran since asyncsup started: its Workers inline, or the
    processes that reported (`processes = N`)."""

    handled: int
    failed: int
    retried: int
    released: int
    in_flight: int  # handlers running now plus messages received and waiting for a free worker
    restarts: int  # new Workers (inline: limits, reloads, deploys, crashes) or new processes


@dataclass
class _Process:
    pid: int
    last: dict[str, int]  # the counters of its last report, in_flight included
    carried: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))  # earlier pids
    restarts: int = 0


class ChildReports:
    """The last report of every consumer process, added up per consumer."""

    def __init__(self) -> None:
        self._processes: dict[tuple[str, str], _Process] = {}  # (consumer, process name)

    def __repr__(self) -> str:
        return f"<ChildReports from {len(self._processes)} process(es)>"

    async def record(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The `report` command of the control socket."""
        consumer, process, pid = _string(args, "consumer"), _string(args, "process"), args.get("pid")
        counters = args.get("counters")
        if type(pid) is not int or not isinstance(counters, dict):
            raise ControlError("a report needs an integer pid and a counters object", "bad_arguments")
        last = {key: _count(counters, key) for key in (*COUNTERS, "in_flight")}
        known = self._processes.get((consumer, process))
        if known is None:
            self._processes[(consumer, process)] = _Process(pid, last)
        elif known.pid != pid:  # the supervisor started a new process under that name
            for key in COUNTERS:
                known.carried[key] += known.last[key]
            known.pid, known.last, known.restarts = pid, last, known.restarts + 1
        else:
            known.last = last
        return {}

    def statistics(self) -> dict[str, ConsumerTotals]:
        totals: dict[str, ConsumerTotals] = {}
        for (consumer, _), process in self._processes.items():
            handled, failed, retried, released = (process.carried[k] + process.last[k] for k in COUNTERS)
            in_flight = process.last["in_flight"] if pid_exists(process.pid) else 0
            mine = ConsumerTotals(handled, failed, retried, released, in_flight, process.restarts)
            before = totals.get(consumer)
            totals[consumer] = mine if before is None else _add(before, mine)
        return totals


def _add(a: ConsumerTotals, b: ConsumerTotals) -> ConsumerTotals:
    pairs = zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True)
    return ConsumerTotals(*(x + y for x, y in pairs))


def _string(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"a report needs {key!r} (a non-empty string)", "bad_arguments")
    return value


def _count(counters: Mapping[str, Any], key: str) -> int:
    value = counters.get(key, 0)
    if type(value) is not int or value < 0:
        raise ControlError(f"counter {key!r} must be an integer >= 0, got {value!r}", "bad_arguments")
    return value


# --- the child's side -------------------------------------------------------------------------------


async def report_while_running(path: str, worker: Worker) -> None:
    """Every REPORT_INTERVAL seconds until cancelled; the caller sends the last one (final_report)."""
    warned = False
    while True:
        await anyio.sleep(REPORT_INTERVAL)
        sent = await send_report(path, worker)
        if not sent and not warned:
            log.info("consumer %s: cannot report to %s; its counters are left out of ctl status",
                     worker.name, path)  # fmt: skip
        warned = warned or not sent


async def send_report(path: str, worker: Worker) -> bool:
    """One report on a fresh connection; False when the parent did not take it in time."""
    from asyncsup.control.protocol import decode_reply, encode_request

    s = worker.statistics()
    counters = {"handled": s.handled, "failed": s.failed, "retried": s.retried,
                "released": s.released, "in_flight": s.running + s.buffered}  # fmt: skip
    process = os.environ.get("ASYNCSUP_PROCESS_NAME") or f"{worker.name}:{os.getpid()}"
    request = encode_request("report", {"consumer": worker.name, "process": process,
                                        "pid": os.getpid(), "counters": counters})  # fmt: skip
    with anyio.move_on_after(REPORT_WAIT):
        try:
            async with await anyio.connect_unix(path) as stream:
                await stream.send(request)
                reply = b""
                while b"\n" not in reply:
                    reply += await stream.receive()
            return decode_reply(reply.split(b"\n", 1)[0]).ok
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, ControlError):
            return False
    return False
