"""Queue depths for `ctl status` and /metrics: every transport a consumer of the config reads from
or sends failures to, whether the consumer runs inline or as `processes = N` children.

An inline consumer's own transports are asked directly. The others (those of consumers running in
child processes, failure transports, an inline consumer waiting out a crash backoff) are opened
here, on the first request, and kept open between requests; a reload that changes or drops a
transport's URL closes the old one at the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from asyncsup.config import Config

if TYPE_CHECKING:  # `asyncsup run` without consumers never imports the transports
    from asyncsup.transports.base import QueueCounts, Transport

COUNTS_WAIT = 2.0  # `ctl status` must answer even when a broker hangs: a late count is left out


class QueueDepths:
    """Counts per transport name, through the consumers' own transports or ones opened here."""

    def __init__(self, config: Callable[[], Config], in_use: Callable[[], Mapping[str, Transport]]) -> None:
        self._config = config  # the config as it is now (reloads change it)
        self._in_use = in_use  # transports open in inline consumers now, by name
        self._opened: dict[str, Transport] = {}  # by URL

    def __repr__(self) -> str:
        return f"<QueueDepths, {len(self._opened)} transport(s) opened for counting>"

    async def counts(self) -> dict[str, QueueCounts]:
        wanted = _named(self._config())
        in_use = self._in_use()
        await self._close(set(self._opened) - set(wanted.values()))
        counts: dict[str, QueueCounts] = {}
        for name, url in wanted.items():
            transport = in_use.get(name) or self._open(url)
            with anyio.move_on_after(COUNTS_WAIT):
                counts[name] = await transport.counts()
        return counts

    async def close(self) -> None:
        await self._close(set(self._opened))

    def _open(self, url: str) -> Transport:
        from asyncsup.transports.base import open_transport

        transport = self._opened.get(url)
        if transport is None:
            transport = self._opened[url] = open_transport(url)
        return transport

    async def _close(self, urls: set[str]) -> None:
        for url in urls:
            with anyio.CancelScope(shield=True):
                await self._opened.pop(url).close()


def _named(config: Config) -> dict[str, str]:
    """name -> URL of every transport a consumer reads or fails to, in the config's order."""
    names = dict.fromkeys(name for consumer in config.consumers.values() for name in consumer.transports_used)
    return {name: config.transports[name] for name in names}
