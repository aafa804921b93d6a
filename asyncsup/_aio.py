"""Small structured-concurrency helpers shared by the supervisor and the consumer."""

from __future__ import annotations

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
