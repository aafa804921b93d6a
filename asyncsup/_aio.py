"""Small structured-concurrency helpers shared by the supervisor and the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


async def race(*waiters: Callable[[], Awaitable[Any]]) -> int:
    """Run the waiters concurrently; return the index of the first to finish, cancelling the rest."""
    winner = -1

    async def run(index: int, waiter: Callable[[], Awaitable[Any]]) -> None:
        nonlocal winner
        await waiter()
        if winner < 0:
            winner = index
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for index, waiter in enumerate(waiters):
            tg.start_soon(run, index, waiter)
    return winner


class Flag:
    """An event (set, clear, wait) that costs ~100 bytes until someone waits on it.

    asyncio.Event allocates a deque (~380 bytes) at birth; a child holds six of them, and waiting
    for the first of two with race() costs a task group and two tasks (~10 KB per child, for as
    long as it runs). Flags are waited on together with wait_any() instead: one future, no task.
    Set and cleared from the loop's thread only.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[Flag]] | None = None

    def __repr__(self) -> str:
        waiting = f", {len(self._waiters)} waiting" if self._waiters else ""
        return f"<Flag {'set' if self._set else 'unset'}{waiting}>"

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(self)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        await wait_any(self)

    def _add(self, future: asyncio.Future[Flag]) -> None:
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)

    def _discard(self, future: asyncio.Future[Flag]) -> None:
        if self._waiters and future in self._waiters:
            self._waiters.remove(future)


async def wait_any(*flags: Flag) -> int:
    """Wait until one of the flags is set; return the index of the one that woke us (cancellable).

    Like asyncio.Event.wait(), it returns at once, without yielding, when a flag is already set.
    """
    for index, flag in enumerate(flags):
        if flag.is_set():
            return index
    future: asyncio.Future[Flag] = asyncio.get_running_loop().create_future()
    for flag in flags:
        flag._add(future)
    try:
        woken_by = await future
    finally:
        for flag in flags:
            flag._discard(future)
    return flags.index(woken_by)
