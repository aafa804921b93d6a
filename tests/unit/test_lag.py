"""The loop-lag watchdog names the function that blocked the loop (issue 5: "logged with its name")."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from asyncsup.control.lag import LoopLag

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


def hog_the_loop() -> None:
    time.sleep(0.6)  # a sync call in async code: the classic mistake the watchdog exists for


class Collect(logging.Handler):
    """Keeps the records and wakes the test on the first (emit runs on the loop thread)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.seen.set()


async def test_a_blocked_loop_is_logged_with_the_function_that_blocked_it() -> None:
    lag = LoopLag(interval=0.1, threshold=0.2)
    collect = Collect()
    logger = logging.getLogger("asyncsup.control")
    logger.addHandler(collect)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lag.run)
            await anyio.sleep(0.15)  # let the watchdog start its beat
            hog_the_loop()
            with anyio.fail_after(10):
                await collect.seen.wait()
            tg.cancel_scope.cancel()
    finally:
        logger.removeHandler(collect)
    message = collect.records[0].getMessage()
    assert "the event loop was blocked for" in message
    assert "hog_the_loop (" in message, message
    assert lag.statistics().blocked >= 1
