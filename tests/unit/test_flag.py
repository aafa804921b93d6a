"""Flag and wait_any: the task-free events a supervised child waits on (asyncsup/_aio.py)."""

from __future__ import annotations

import anyio
import pytest

from asyncsup._aio import Flag, wait_any

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


async def test_an_already_set_flag_wins_at_once() -> None:
    stop, exited = Flag(), Flag()
    exited.set()
    assert await wait_any(stop, exited) == 1


async def test_the_flag_set_later_wakes_the_waiter_and_says_which() -> None:
    stop, exited = Flag(), Flag()
    async with anyio.create_task_group() as tg:
        result: list[int] = []

        async def waiter() -> None:
            result.append(await wait_any(stop, exited))

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        stop.set()
    assert result == [0]


async def test_a_flag_cleared_before_the_waiter_runs_still_counts_as_its_wake_up() -> None:
    """As asyncio.Event.wait() returns True even when cleared meanwhile: the waiter saw the set."""
    flag, result = Flag(), []

    async def waiter() -> None:
        result.append(await wait_any(Flag(), flag))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        flag.set()
        flag.clear()
    assert result == [1]
    assert not flag.is_set()


async def test_a_cancelled_waiter_leaves_no_future_behind() -> None:
    flag = Flag()
    with anyio.move_on_after(0.01):
        await wait_any(flag, Flag())
    assert "waiting" not in repr(flag)
    flag.set()  # nobody to wake, nothing to fail
    assert await wait_any(flag) == 0


async def test_many_waiters_on_one_flag_all_wake() -> None:
    flag, woken = Flag(), []
    async with anyio.create_task_group() as tg:
        for n in range(5):

            async def waiter(n: int = n) -> None:
                await flag.wait()
                woken.append(n)

            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert repr(flag) == "<Flag unset, 5 waiting>"
        flag.set()
    assert sorted(woken) == [0, 1, 2, 3, 4]
