"""A rig for worker scenarios: real transports, a handler registry, a worker.

Every scenario runs on memory:// (plain asyncio loop), sqlite:// (a real file, uvloop) and redis://
(the local Redis, uvloop; skipped without one, a failure under CI=true).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncsup.config import Consumer, RetryPolicy
from asyncsup.consumer.envelope import decode, encode, new_envelope
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.outcomes import Source
from asyncsup.consumer.worker import Worker, WorkerResult
from asyncsup.lifecycle import Shutdown
from asyncsup.transports.base import Delivery, Transport, open_transport

WAIT = 20.0  # generous bound for any observable event on a noisy machine

NO_DELAY = RetryPolicy(max_retries=2, delay=0.0, multiplier=1.0, max_delay=0.0, jitter=0.0)


REDIS_URL = os.environ.get("ASYNCSUP_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(
    params=[
        pytest.param(("memory", ("asyncio", {})), id="memory-asyncio"),
        pytest.param(("sqlite", ("asyncio", {"use_uvloop": True})), id="sqlite-uvloop"),
        pytest.param(
            ("redis", ("asyncio", {"use_uvloop": True})), id="redis-uvloop", marks=pytest.mark.redis
        ),
    ]
)
def flavour(request: pytest.FixtureRequest) -> tuple[str, tuple[str, dict[str, Any]]]:
    if request.param[0] == "redis":
        _require_redis()
    return request.param  # type: ignore[no-any-return]


def _require_redis() -> None:
    """Skip without a Redis; with CI=true a missing Redis fails instead (never a silent skip)."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Redis at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def anyio_backend(flavour: tuple[str, tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    return flavour[1]


@dataclasses.dataclass
class Rig:
    scheme: str
    folder: Path
    opened: list[Transport] = dataclasses.field(default_factory=list)

    prefix: str = dataclasses.field(default_factory=lambda: f"asyncsup-consumer:{os.urandom(4).hex()}:")

    def url(self, queue: str) -> str:
        if self.scheme == "memory":
            return f"memory://{queue}"
        if self.scheme == "redis":
            return f"{REDIS_URL}?stream={self.prefix}{queue}"
        return f"sqlite:///{self.folder}/queue.db?queue={queue}"

    def source(self, queue: str) -> Source:
        transport = open_transport(self.url(queue))
        self.opened.append(transport)
        return Source(queue, transport)

    async def publish(self, source: Source, *bodies: Any, type: str = "Ping", **headers: Any) -> None:
        data = [encode(new_envelope(type, b, headers=headers or None)) for b in bodies]
        await source.transport.publish(data)

    async def everything(self, source: Source) -> list[Delivery]:
        return await source.transport.browse(10_000)

    async def envelopes(self, source: Source) -> list[Any]:
        return [decode(d.data) for d in await self.everything(source)]


@pytest.fixture
async def rig(flavour: tuple[str, Any], tmp_path: Path) -> AsyncIterator[Rig]:
    rig = Rig(flavour[0], tmp_path)
    yield rig
    for transport in rig.opened:
        await transport.close()
    if rig.scheme == "redis":
        _delete_redis_keys(rig.prefix)


def consumer(**changes: Any) -> Consumer:
    base = Consumer("test", ("q",), (), concurrency=4, retry=NO_DELAY)
    return dataclasses.replace(base, **changes)


def registry(*handlers: tuple[str, Callable[..., Any]]) -> HandlerRegistry:
    reg = HandlerRegistry()
    for name, func in handlers:
        reg.add(func, name)
    return reg


class Running:
    """A worker running in a task group, with its shutdown and (when done) its result."""

    def __init__(self, worker: Worker, shutdown: Shutdown) -> None:
        self.worker = worker
        self.shutdown = shutdown
        self.result: WorkerResult | None = None
        self.done = anyio.Event()

    async def run(self) -> None:
        try:
            self.result = await self.worker.run()
        finally:
            self.done.set()

    async def wait(self) -> WorkerResult:
        with anyio.fail_after(WAIT):
            await self.done.wait()
        assert self.result is not None
        return self.result


async def run_until_stopped(worker: Worker) -> WorkerResult:
    """Run a worker that stops by itself (a limit); fail the test if it does not."""
    with anyio.fail_after(WAIT):
        return await worker.run()


class Counter:
    """Counts calls and lets a test wait until a count is reached, without sleeping."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self._waiters: list[tuple[int, anyio.Event]] = []

    def hit(self, value: Any = None) -> None:
        self.calls.append(value)
        for n, event in self._waiters:
            if len(self.calls) >= n:
                event.set()

    async def wait_for(self, n: int) -> None:
        if len(self.calls) >= n:
            return
        event = anyio.Event()
        self._waiters.append((n, event))
        with anyio.fail_after(WAIT):
            await event.wait()


def body_of(data: bytes) -> Any:
    return json.loads(data)["body"]


def worker_for(
    settings: Consumer,
    source: Source,
    ping: Callable[..., Any],
    *,
    failure: Source | None = None,
    shutdown: Shutdown | None = None,
) -> Worker:
    """A worker of one transport with one handler, for "Ping" messages."""
    return Worker(settings, [source], registry(("Ping", ping)), shutdown=shutdown or Shutdown(5),
                  failure=failure)  # fmt: skip


class LogEvent(logging.Handler):
    """An event set when the consumer logs a line containing `text`: something to wait on."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()

    def __enter__(self) -> anyio.Event:
        logger = logging.getLogger("asyncsup.consumer")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self.event

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("asyncsup.consumer")
        logger.removeHandler(self)
        logger.setLevel(self._level)
