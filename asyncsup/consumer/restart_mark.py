"""The fleet-wide stop-workers: a restart mark in Redis that every consumer watches.

`asyncsup stop-workers` writes ``<prefix>:restart`` = now, by the Redis server's clock (one clock
for the fleet), on each Redis server it is given. A consumer reads the mark of every distinct Redis
server among its transports when it starts (its baseline; no mark = none) and again every
POLL_INTERVAL seconds; a mark newer than the one it last saw means "drain and restart". So the mark
costs one GET per server per interval per consumer, never a round trip per message, and a consumer
acts on it within POLL_INTERVAL seconds plus the time its running handlers take to finish.

What restarting means is the caller's: `asyncsup consume` stops its Worker (running handlers finish
and ack, prefetched messages go back) and exits 0, so its supervisor starts a fresh process with the
new code; inline consumers of `asyncsup run` restart in-process with freshly imported handler code,
the path `ctl stop-workers` takes (consumer/inline.py), and go on watching.

A consumer started after the mark takes it as its baseline and does not stop. Transports that are not
Redis (sqlite://, memory://) have no fleet mark: on one host, `asyncsup ctl stop-workers` does it.
A Redis outage while polling is logged once (and once more when the mark can be read again); the
consumer goes on consuming. If the baseline cannot be read when the consumer starts, the first mark
read later becomes the baseline: a stop-workers issued during that outage is missed by it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlsplit

import anyio

from asyncsup.config import Config
from asyncsup.consumer.wiring import transport_url
from asyncsup.errors import ConfigError, TransportError

if TYPE_CHECKING:
    from asyncsup.transports.redis import RedisTransport

log = logging.getLogger("asyncsup.consumer")

POLL_INTERVAL = 3.0  # seconds between reads of the mark: the latency of a fleet stop-workers
REDIS_SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "asyncsup"  # as in transports/redis_url.py
NOT_REDIS = "stop-workers needs a Redis transport; for one host use `asyncsup ctl stop-workers`"


@dataclass(frozen=True)
class Mark:
    """A restart mark: where it was read and when it was set (the server's clock, epoch seconds)."""

    where: str
    at: float

    def __str__(self) -> str:
        return f"restart mark set on {self.where} at {when(self.at)}"


class _Server:
    """One Redis server (and key prefix): its mark, and the newest value of it seen so far."""

    def __init__(self, where: str, transport: RedisTransport) -> None:
        self.where = where
        self.transport = transport
        self.seen: float | None = None
        self.known = False  # False until the baseline could be read
        self.failing = False

    def __repr__(self) -> str:
        if not self.known:
            state = "baseline not read yet"
        else:
            state = "no mark" if self.seen is None else f"last mark set at {when(self.seen)}"
        return f"<restart mark on {self.where}: {state}{', unreachable' if self.failing else ''}>"

    async def newer(self) -> Mark | None:
        """The mark if it is newer than the last one seen; the first read only sets the baseline."""
        try:
            value = await self.transport.restart_mark()
        except TransportError as exc:
            self._failed(exc)
            return None
        self._read()
        if not self.known:
            self.known, self.seen = True, value
            seen = "none set yet" if value is None else f"last set at {when(value)}"
            log.info("stop-workers: watching the restart mark on %s every %gs (%s)",
                     self.where, POLL_INTERVAL, seen)  # fmt: skip
            return None
        if value is not None and (self.seen is None or value > self.seen):
            self.seen = value
            return Mark(self.where, value)
        log.debug("stop-workers: no newer restart mark on %s", self.where)
        return None

    def _failed(self, exc: TransportError) -> None:
        if not self.failing:
            self.failing = True
            log.warning("stop-workers: cannot read the restart mark on %s (%s); consuming goes on "
                        "and the mark is read again every %gs", self.where, exc, POLL_INTERVAL)  # fmt: skip

    def _read(self) -> None:
        if self.failing:
            self.failing = False
            log.info("stop-workers: the restart mark on %s can be read again", self.where)


class RestartMarks:
    """The restart marks of the distinct Redis servers among some transport URLs (others are
    ignored: they have no fleet mark). An async context manager: it closes what it opened."""

    def __init__(self, urls: Iterable[str], *, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval
        self._servers = [_Server(where, _open(url)) for where, url in _distinct(urls).items()]

    def __repr__(self) -> str:
        servers = ", ".join(repr(s) for s in self._servers) or "no Redis server"
        return f"<RestartMarks every {self.interval:g}s: {servers}>"

    def __bool__(self) -> bool:
        return bool(self._servers)

    async def __aenter__(self) -> RestartMarks:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            for server in self._servers:
                await server.transport.close()

    async def wait_newer(self) -> Mark:
        """The next mark newer than what was seen; the first call reads the baselines at once.
        Without a Redis server this never returns."""
        if not self._servers:
            await anyio.sleep_forever()
        for server in self._servers:
            if not server.known:
                await server.newer()
        while True:
            await anyio.sleep(self.interval)
            for server in self._servers:
                mark = await server.newer()
                if mark is not None:
                    return mark

    async def wait_stop(self) -> str:
        """Why a Worker should stop (`Worker(stop_when=...)`): the next newer mark, in words."""
        return f"stop-workers: {await self.wait_newer()}"


class Restartable(Protocol):
    """What restart_on_marks needs: consumer/inline.py's InlineConsumers."""

    async def restart_all(self) -> list[str]: ...


async def restart_on_marks(marks: RestartMarks, consumers: Restartable) -> None:
    """For `asyncsup run`: on each newer mark, inline consumers drain and restart with fresh code,
    as on `ctl stop-workers`; code that does not import is refused and the old code runs on."""
    while True:
        mark = await marks.wait_newer()
        log.info("stop-workers: %s; restarting inline consumers with fresh handler code", mark)
        try:
            done = await consumers.restart_all()
        except ConfigError as exc:
            log.error("stop-workers refused, nothing restarted: %s", exc)
            continue
        for line in done:
            log.info("stop-workers: %s", line)


def redis_urls(config: Config | None, names: Iterable[str]) -> list[str]:
    """The URLs of those transports (names or URLs) that are Redis."""
    urls = (transport_url(config, name) for name in names)
    return [url for url in urls if urlsplit(url).scheme.lower() in REDIS_SCHEMES]


def fleet_urls(config: Config | None, names: Sequence[str]) -> list[str]:
    """What `asyncsup stop-workers` marks: the named transports, or every Redis one of the config."""
    if names:
        for name in names:
            if not redis_urls(config, [name]):
                raise ConfigError(name, "", NOT_REDIS)
        return redis_urls(config, names)
    if config is None:
        raise ConfigError("command line", "--transport", "name a Redis transport (a URL, or -c FILE)")
    urls = redis_urls(config, config.transports)
    if not urls:
        raise ConfigError(str(config.file), "transports", f"no Redis transport; {NOT_REDIS}")
    return urls


async def set_marks(urls: Iterable[str]) -> list[Mark]:
    """Set the restart mark on each distinct Redis server among the URLs (TransportError if one
    cannot be reached: the marks set before it stay set)."""
    marks = []
    for where, url in _distinct(urls).items():
        transport = _open(url)
        try:
            marks.append(Mark(where, await transport.set_restart_mark()))
        finally:
            with anyio.CancelScope(shield=True):
                await transport.close()
    return marks


def when(at: float) -> str:
    """A mark's time as the fleet reads it: UTC, to the millisecond."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return f"{stamp}.{int(at * 1000) % 1000:03d} UTC"


def _distinct(urls: Iterable[str]) -> dict[str, str]:
    """One URL per distinct mark (server, database and key prefix), by how the mark is shown."""
    found: dict[str, str] = {}
    for url in urls:
        found.setdefault(_where(url), url)
    return found


def _where(url: str) -> str:
    """`redis://host:port/db`, and the mark's key when its prefix is not the default."""
    parts = urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:  # not a URL we can open: _open says so
        return url
    where = f"{parts.scheme.lower()}://{parts.hostname or 'localhost'}:{port}/{parts.path.strip('/') or '0'}"
    prefix = dict(parse_qsl(parts.query)).get("prefix") or DEFAULT_PREFIX
    return where if prefix == DEFAULT_PREFIX else f"{where} (key {prefix}:restart)"


def _open(url: str) -> RedisTransport:
    """A transport of its own for the mark (no connection is made until it is read)."""
    from asyncsup.transports.base import open_transport  # checks the redis extra first

    transport = open_transport(url)
    from asyncsup.transports.redis import RedisTransport

    assert isinstance(transport, RedisTransport), url
    return transport
