"""Ready checks: a program is RUNNING only once it answers (tcp), says so (line) or passes a command."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import anyio

from .._aio import Flag
from ..config import Ready
from .runtime import ChildTracker
from .spawn import DEVNULL, spawn

log = logging.getLogger("asyncsup.supervisor")


async def wait_ready(ready: Ready, line_seen: Flag, reaper: ChildTracker) -> bool:
    """True once the check passes, False when ready.timeout runs out first."""
    tcp, command = ready.tcp, ready.command
    with anyio.move_on_after(ready.timeout):
        if ready.line is not None:
            await line_seen.wait()
        elif tcp is not None:
            await _poll(ready.interval, lambda: _tcp_open(*tcp))
        elif command is not None:
            await _poll(ready.interval, lambda: _command_ok(command, reaper))
        return True
    return False


async def _poll(interval: float, probe: Callable[[], Awaitable[bool]]) -> None:
    # Probing is the only way to learn that a port opened; the interval bounds the cost.
    while not await probe():  # noqa: ASYNC110 - nothing to wait on but the port itself
        await anyio.sleep(interval)


async def _tcp_open(host: str, port: int) -> bool:
    try:
        stream = await anyio.connect_tcp(host, port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def _command_ok(argv: tuple[str, ...], reaper: ChildTracker) -> bool:
    try:
        process = spawn(
            argv, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, cwd=None, env=os.environ, tracker=reaper
        )
    except OSError as exc:
        log.warning("ready command %r cannot run: %s", argv[0], exc)
        return False
    try:
        return await process.wait() == 0
    finally:
        if process.returncode is None:  # the ready timeout cancelled us: do not leave it behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
