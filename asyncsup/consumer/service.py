"""Consumers as part of `asyncsup run`: inline ones in this process, the others as programs.

``processes = 0`` runs a consumer inline, in the supervisor's event loop: cheapest, and enough
when handlers are I/O-bound. When a limit stops it, it is restarted in-process (a memory limit
cannot be cured that way: the log says so and suggests ``processes = N``). ``processes = N`` turns
it into a supervised program of N ``asyncsup consume --consumer NAME`` children, which the
supervisor restarts whenever they exit (limits included), each with a fresh heap.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence

import anyio

from asyncsup.config import Config, Consumer, Program
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.outcomes import Source
from asyncsup.consumer.statistics import WorkerResult
from asyncsup.consumer.wiring import build_registry, opened
from asyncsup.consumer.worker import Worker
from asyncsup.errors import AsyncsupError
from asyncsup.lifecycle import Shutdown

log = logging.getLogger("asyncsup.consumer")

CRASH_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restarting a consumer that failed


def consumer_programs(config: Config) -> dict[str, Program]:
    """One supervised program per consumer with ``processes = N``: N `asyncsup consume` children."""
    programs = {}
    for consumer in config.consumers.values():
        if consumer.processes > 0:
            name = f"consumer-{consumer.name}"
            command = (sys.executable, "-m", "asyncsup", "consume", "--consumer", consumer.name,
                       "-c", str(config.file))  # fmt: skip
            programs[name] = Program(
                name=name,
                command=command,
                numprocs=consumer.processes,
                autorestart="always",  # a limit exits 0 on purpose: it wants a fresh process
                startretries=None,
                stop_timeout=config.settings.shutdown_timeout,
            )
    return programs


async def run_consumers(config: Config, shutdown: Shutdown) -> None:
    """Run every inline consumer (``processes = 0``) until the shutdown; they drain with it."""
    inline = [c for c in config.consumers.values() if c.processes == 0]
    registries = [build_registry(config, c) for c in inline]  # import errors fail before any start
    async with anyio.create_task_group() as tg:
        for consumer, registry in zip(inline, registries, strict=True):
            tg.start_soon(run_inline, config, consumer, registry, shutdown, name=f"consumer {consumer.name}")


async def run_inline(
    config: Config, consumer: Consumer, registry: HandlerRegistry, shutdown: Shutdown
) -> None:
    """One consumer, restarted in-process after a limit and (with a backoff) after a failure."""
    crashes = 0
    while not shutdown.requested:
        try:
            result = await _run_once(config, consumer, registry, shutdown)
        except AsyncsupError as exc:  # a transport down: keep the supervisor up, retry
            delay = CRASH_BACKOFF[min(crashes, len(CRASH_BACKOFF) - 1)]
            crashes += 1
            log.error("consumer %s failed: %s; restarting in %gs", consumer.name, exc, delay)
            with anyio.move_on_after(delay):
                await shutdown.wait_requested()
            continue
        crashes = 0
        if not result.limit_reached:
            return
        _log_restart(consumer, result)
        if result.reason.startswith("memory limit"):  # it would trip again at once, forever
            consumer = dataclasses.replace(consumer, memory_limit=0)


async def _run_once(
    config: Config, consumer: Consumer, registry: HandlerRegistry, shutdown: Shutdown
) -> WorkerResult:
    names: Sequence[str] = consumer.transports
    failure_names = [consumer.failure_transport] if consumer.failure_transport else []
    async with opened(config, [*names, *failure_names]) as sources:
        failure: Source | None = sources[len(names)] if failure_names else None
        worker = Worker(consumer, sources[: len(names)], registry, shutdown=shutdown, failure=failure)
        return await worker.run()


def _log_restart(consumer: Consumer, result: WorkerResult) -> None:
    if result.reason.startswith("memory limit"):
        log.warning(
            "consumer %s: %s; restarting it in-process, which does not give memory back to the "
            "OS, so its memory_limit is ignored from now on: set processes = 1 (or more) under "
            "[consumers.%s] to run it as a child process that is replaced instead",
            consumer.name,
            result.reason,
            consumer.name,
        )
    else:
        log.info("consumer %s: %s; restarting it in-process", consumer.name, result.reason)
