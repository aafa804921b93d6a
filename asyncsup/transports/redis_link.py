"""The one boundary between the Redis transport and redis-py: errors, outages, reconnects.

Every call to Redis goes through ``Link.call``. There, and only there, driver exceptions become
``TransportError`` (chained with ``from``), so no caller ever sees a bare redis exception.

An outage (connection refused or reset, a timeout, Redis still loading its data after a restart)
is ridden out: the call is tried again with a growing backoff (50 ms doubling to 1 s), and the
outage is logged once when it starts and once when it ends, not per retry. How long a call waits
for Redis to come back is the caller's choice: ``until`` (a receive: its own wait, after which it
simply returns nothing) or, by default, ``retry_for`` seconds from the start of the outage (acks,
publishes, ...: then TransportError). The backoff sleeps are ordinary cancellation points, so a
cancelled call returns at once even in the middle of an outage.

``shield=True`` shields each single attempt (not the backoff between attempts): a script that
hands out messages must not lose its reply to a cancellation, or the messages it leased would
stay hidden for a whole lease. Each attempt is bounded by the socket timeouts.

redis-py's own retries are switched off: the policy is here, with the logging.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from redis import exceptions as rx
from redis.asyncio import Redis

from asyncsup.errors import TransportClosed, TransportError

log = logging.getLogger("asyncsup.transports.redis")

T = TypeVar("T")
Op = Callable[[Redis], Awaitable[T]]

OUTAGE = (rx.ConnectionError, rx.TimeoutError, OSError)  # BusyLoadingError is a ConnectionError
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0


class _GaveUp(Exception):
    """Internal: the outage outlasted the caller's patience (carries the last driver error)."""


class Link:
    """A lazily made redis-py client for one URL, and the policy for calling it."""

    def __init__(self, url: str, make_client: Callable[[], Redis], retry_for: float) -> None:
        self.url = url  # as shown in logs: without the password
        self._make_client = make_client
        self._retry_for = retry_for
        self._client: Redis | None = None
        self._closed = False
        self._down_since: float | None = None  # anyio time the outage began; None when up
        self._backoff = 0.0
        self._retry_at = 0.0

    def __repr__(self) -> str:
        if self._closed:
            return f"<Link {self.url} closed>"
        if self._client is None:
            return f"<Link {self.url} not connected yet>"
        if self._down_since is not None:
            down = anyio.current_time() - self._down_since
            return f"<Link {self.url} down for {down:.1f}s, reconnecting>"
        return f"<Link {self.url} connected>"

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def client(self) -> Redis:
        if self._closed:
            raise TransportClosed(self.url)
        if self._client is None:
            self._client = self._make_client()
        return self._client

    async def call(self, op: Op[T], *, until: float | None = None, shield: bool = False) -> T:
        """op(client), riding out an outage until `until` (default: retry_for); TransportError after."""
        try:
            return await self._attempts(op, until, shield)
        except _GaveUp as exc:
            cause = exc.__cause__
            down = anyio.current_time() - (self._down_since or anyio.current_time())
            raise TransportError(f"{self.url}: Redis unreachable for {down:.1f}s: {cause}") from cause

    async def call_or(self, op: Op[T], default: T, *, until: float, shield: bool = False) -> T:
        """op(client), or `default` when Redis is unreachable until `until`."""
        try:
            return await self._attempts(op, until, shield)
        except _GaveUp:
            return default

    async def _attempts(self, op: Op[T], until: float | None, shield: bool) -> T:
        while True:
            await self._wait_turn(until)
            client = self.client()
            try:
                if shield:
                    with anyio.CancelScope(shield=True):
                        result = await op(client)
                else:
                    result = await op(client)
            except Exception as exc:
                if self._closed:  # close() cut the connection under this call (uvloop may say
                    await _close(client)  # RuntimeError: handler is closed): see below
                    raise TransportClosed(self.url) from exc
                if not isinstance(exc, OUTAGE):
                    if isinstance(exc, rx.RedisError):
                        raise _mapped(self.url, exc) from exc
                    raise
                self._failed(exc)
                if self._past(until):
                    raise _GaveUp() from exc
                continue
            if self._closed:  # close() came during the call, which may have opened a connection
                await _close(client)  # since: left open, uvloop would wait for it at loop close
            self._succeeded()
            return result

    async def _wait_turn(self, until: float | None) -> None:
        """Sleep out the backoff of an ongoing outage (never past the caller's patience)."""
        if self._down_since is None:
            return
        now = anyio.current_time()
        if self._retry_at > now:
            if until is not None and self._retry_at > until:
                await anyio.sleep(max(until - now, 0.0))  # so the caller does not spin on us
                raise _GaveUp()
            await anyio.sleep(self._retry_at - now)

    def _past(self, until: float | None) -> bool:
        now = anyio.current_time()
        if until is None:
            assert self._down_since is not None
            until = self._down_since + self._retry_for
        return now >= until

    def _failed(self, exc: BaseException) -> None:
        now = anyio.current_time()
        if self._down_since is None:
            self._down_since = now
            self._backoff = FIRST_BACKOFF
            log.warning("%s: lost the connection to Redis (%s); reconnecting", self.url, _why(exc))
        else:
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self._retry_at = max(self._retry_at, now + self._backoff)

    def _succeeded(self) -> None:
        if self._down_since is not None:
            down = anyio.current_time() - self._down_since
            self._down_since = None
            self._retry_at = 0.0
            log.info("%s: reconnected to Redis after %.1fs", self.url, down)

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await _close(client)


async def _close(client: Redis) -> None:
    """Close the client's connections (again: closing twice is harmless), whatever happens."""
    closing = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
    with anyio.CancelScope(shield=True), contextlib.suppress(rx.RedisError, OSError):
        await closing()


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script run by its SHA1 (EVALSHA), sent whole only when the server lacks it."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())

    def __repr__(self) -> str:
        return f"<Script {self.sha[:8]}, {len(self.source)} characters>"

    async def run(self, r: Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await command(r, "EVALSHA", self.sha, len(keys), *keys, *args)
        except rx.NoScriptError:  # a restarted or flushed server: EVAL also caches it again
            return await command(r, "EVAL", self.source, len(keys), *keys, *args)


def client(kwargs: dict[str, Any]) -> Redis:
    """A redis-py client whose XREADGROUP replies stay as hiredis parsed them (lists): redis-py
    would otherwise make a dict of every entry, which the transport does not need."""
    made = Redis(**kwargs)
    made.set_response_callback("XREADGROUP", _as_is)
    return made


def _as_is(response: Any, **options: Any) -> Any:
    return response


async def pipelined(r: Redis, *commands: Sequence[Any]) -> list[Any]:
    """Commands in one round trip (not a transaction: each runs); errors come back in place."""
    async with r.pipeline(transaction=False) as pipe:
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))


async def command(r: Redis, *args: Any) -> Any:
    """One Redis command, its reply as hiredis parsed it (bytes, ints, lists)."""
    return await r.execute_command(*args)  # type: ignore[no-untyped-call]


def _mapped(url: str, exc: rx.RedisError) -> TransportError:
    text = str(exc)
    if text.startswith("BADRECEIPT "):  # raised by the scripts, before they change anything
        receipt = text.removeprefix("BADRECEIPT ").partition(" script: ")[0]
        return TransportError(f"not a receipt of this transport: {receipt!r}")
    return TransportError(f"{url}: {text}")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def no_group(exc: TransportError) -> bool:
    """Was this the stream or consumer group missing (deleted, or Redis restarted empty)?"""
    cause: Any = exc.__cause__
    return isinstance(cause, rx.ResponseError) and str(cause).startswith("NOGROUP")


def block_ms(seconds: float) -> int:
    """A BLOCK argument: at least 1 ms (0 would mean forever)."""
    return max(1, math.ceil(seconds * 1000))
