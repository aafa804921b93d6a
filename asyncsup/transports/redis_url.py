"""The redis:// and rediss:// URL of the Redis transport: its options, and the client it makes.

``redis://[[user]:password@]host[:port][/db]?stream=NAME&group=NAME&consumer=NAME`` (``rediss://``
for TLS), with options:

- ``stream=NAME`` (or ``queue=NAME``, as for sqlite://): default "default". The stream's key.
- ``group=NAME``: default "asyncsup". Created on first use (MKSTREAM), from the stream's start.
- ``consumer=NAME``: default ``<hostname>-<pid>-<6 random hex>``, unique per transport object, so
  two workers never share pending entries by accident (Symfony's classic duplicate). A consumer
  that holds nothing is removed from the group when its transport closes; consumers that hold
  nothing and were not seen for a day (processes that died) are removed then too.
- ``format=asyncsup|symfony``: with ``symfony``, entries written by Symfony Messenger (field
  ``message``) are handed out as our envelope, and Symfony's delayed set is moved too
  (redis_interop.py). Our own entries always use the field ``m``.
- ``recheck=SECONDS`` (default 1): the longest an idle receive blocks before it looks again for
  what Redis cannot wake it for: a lease that runs out, a release or a delayed message scheduled
  by *another* transport while it waits. Its own delayed messages and the lease ends it can see
  (up to 200 pending entries) wake it on time; new entries wake it at once.
- ``retry_for=SECONDS`` (default 10): how long publish/ack/... wait for Redis to come back after
  a connection loss before they raise TransportError (a receive waits its own ``wait``).
- ``prefix=NAME`` (default "asyncsup"): the key of the fleet-wide stop mark, ``<prefix>:restart``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asyncsup.errors import TransportError
from asyncsup.transports.base import DEFAULT_QUEUE, seconds_option, url_options

OPTIONS = ("stream", "queue", "group", "consumer", "format", "recheck", "retry_for", "prefix")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    stream: str
    group: str = "asyncsup"
    consumer: str | None = None  # None: made unique on first use
    symfony: bool = False
    recheck: float = 1.0
    retry_for: float = 10.0
    prefix: str = "asyncsup"


def parse_url(url: str, parts: SplitResult) -> tuple[str, RedisOptions, dict[str, Any]]:
    """(the URL with its password masked, the transport's options, the redis-py client's kwargs)."""
    options = url_options(url, parts, OPTIONS)
    settings = RedisOptions(
        stream=_stream_name(url, options),
        group=options.get("group") or "asyncsup",
        consumer=options.get("consumer") or None,
        symfony=_format(url, options) == "symfony",
        recheck=seconds_option(url, options, "recheck", 1.0) or 1.0,
        retry_for=seconds_option(url, options, "retry_for", 10.0),
        prefix=options.get("prefix") or "asyncsup",
    )
    return _masked(url, parts), settings, _client_kwargs(url, parts, settings.recheck)


def _stream_name(url: str, options: dict[str, str]) -> str:
    stream, queue = options.get("stream"), options.get("queue")
    if stream and queue and stream != queue:
        raise TransportError(f"{url}: two stream names, stream={stream!r} and queue={queue!r}")
    return stream or queue or DEFAULT_QUEUE


def _format(url: str, options: dict[str, str]) -> str:
    value = options.get("format", "asyncsup")
    if value not in ("asyncsup", "symfony"):
        raise TransportError(f"{url}: option 'format': expected asyncsup or symfony, got {value!r}")
    return value


def _client_kwargs(url: str, parts: SplitResult, recheck: float) -> dict[str, Any]:
    try:
        port = parts.port or 6379
    except ValueError:
        raise TransportError(f"{url}: the port is not a number") from None
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise TransportError(f"{url}: the path must be a database number, got {parts.path!r}")
    return {
        "host": parts.hostname or "localhost",
        "port": port,
        "db": int(db),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "ssl": parts.scheme.lower() == "rediss",
        "socket_timeout": recheck + 5.0,  # longer than any BLOCK we send
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),  # the outage policy is ours (redis_link.py)
        "decode_responses": False,
    }


def _masked(url: str, parts: SplitResult) -> str:
    if parts.password is None:
        return url
    user = parts.username or ""
    return url.replace(f"{user}:{parts.password}@", f"{user}:***@", 1)
