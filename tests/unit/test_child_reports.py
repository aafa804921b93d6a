"""ChildReports: the parent's view of `processes = N` consumers, from the counters children send."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from asyncsup.consumer.reports import ChildReports, ConsumerTotals
from asyncsup.errors import ControlError

pytestmark = pytest.mark.anyio
DEAD = 2**22 + 12345  # above pid_max's default: no such process


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def report(process: str, pid: int, handled: int, in_flight: int = 0) -> dict[str, Any]:
    counters = {"handled": handled, "failed": 1, "retried": 0, "released": 0, "in_flight": in_flight}
    return {"consumer": "workers", "process": process, "pid": pid, "counters": counters}


async def test_processes_add_up_and_a_new_pid_carries_the_old_counters() -> None:
    reports = ChildReports()
    await reports.record(report("w:0", DEAD, handled=7, in_flight=3))
    await reports.record(report("w:1", os.getpid(), handled=5, in_flight=2))
    assert reports.statistics() == {"workers": ConsumerTotals(12, 2, 0, 0, 2, 0)}  # the dead one holds none
    await reports.record(report("w:0", os.getpid(), handled=1))  # restarted: counts from 0 again
    assert reports.statistics() == {"workers": ConsumerTotals(13, 3, 0, 0, 2, 1)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"process": "w:0", "pid": 1, "counters": {}}, "a report needs 'consumer' (a non-empty string)"),
        ({**report("w:0", 1, 0), "pid": "1"}, "a report needs an integer pid and a counters object"),
        ({**report("w:0", 1, 0), "counters": {"handled": -1}}, "counter 'handled' must be an integer >= 0"),
    ],
)
async def test_a_bad_report_is_refused_with_the_reason(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError, match=re.escape(message)):
        await ChildReports().record(args)
