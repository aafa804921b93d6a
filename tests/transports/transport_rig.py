"""The transports under test, by kind: URLs and an opener that closes what it opened."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis_rig

from asyncsup.transports.base import Transport, open_transport
from asyncsup.transports.memory import MemoryBroker

TRANSPORTS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


class Opener:
    """Opens transports of one kind on one backing store (a broker, a file) and closes them all."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.broker = MemoryBroker()
        self.opened: list[Transport] = []
        if kind == "redis":  # keys under a prefix of this test's own, deleted by close_all()
            redis_rig.require_redis()
            self.prefix = redis_rig.new_prefix()

    def __repr__(self) -> str:
        return f"<Opener {self.kind}, {len(self.opened)} transports opened>"

    def url(self, queue: str = "default", *, poll: float | None = None) -> str:
        """The URL of `queue`. `poll` (SQLite only) is how often idle receivers re-check."""
        if self.kind == "memory":
            return f"memory://{queue}"
        if self.kind == "sqlite":
            extra = f"&poll={poll}" if poll is not None else ""
            return f"sqlite:///{self.folder / 'queue.db'}?queue={queue}{extra}"
        if self.kind == "redis":  # poll: how long an idle receive blocks before it re-checks
            return redis_rig.url(self.prefix + queue, **({"recheck": poll} if poll else {}))
        raise AssertionError(f"no URL for transport kind {self.kind!r}")

    def __call__(self, queue: str = "default", *, poll: float | None = None) -> Transport:
        transport = open_transport(self.url(queue, poll=poll), memory=self.broker)
        self.opened.append(transport)
        return transport

    async def close_all(self) -> None:
        for transport in self.opened:
            await transport.close()
        if self.kind == "redis":
            redis_rig.delete_keys(self.prefix)
