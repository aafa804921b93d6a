"""From config to live objects: transport names to open transports, handler modules to a registry.

Shared by the inline consumers, `asyncsup consume`, `send`, `stats` and `failed`, so every entry point
resolves names, opens and closes transports the same way.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio

from asyncsup.config import Config, Consumer, load_config
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.outcomes import Source
from asyncsup.errors import ConfigError, UnknownTransport
from asyncsup.transports.base import Transport


def as_config(config: Config | str | Path | None) -> Config | None:
    if config is None or isinstance(config, Config):
        return config
    return load_config(config)


def transport_url(config: Config | None, name: str) -> str:
    """A [transports] name (or a URL, taken as is) -> its URL."""
    if "://" in name:
        return name
    known = config.transports if config is not None else {}
    url = known.get(name)
    if url is None:
        raise UnknownTransport(name, known)
    return url


async def open_url(url: str) -> Transport:
    from asyncsup.transports.base import open_transport

    transport = open_transport(url)
    if inspect.isawaitable(transport):  # whether opening is a coroutine is the backend's business
        transport = await transport
    return transport  # type: ignore[no-any-return,unused-ignore]


async def close_quietly(transport: Transport) -> None:
    with anyio.CancelScope(shield=True):
        await transport.close()


@asynccontextmanager
async def opened(config: Config | None, names: Sequence[str]) -> AsyncIterator[list[Source]]:
    """Open the named transports (in order), close them all on the way out."""
    async with AsyncExitStack() as stack:
        sources = []
        for name in names:
            transport = await open_url(transport_url(config, name))
            stack.push_async_callback(close_quietly, transport)
            sources.append(Source(name, transport))
        yield sources


Opened = tuple[list[Source], Source | None]  # the transports a consumer reads; its failure one


@asynccontextmanager
async def opened_for(config: Config | None, consumer: Consumer) -> AsyncIterator[Opened]:
    """A consumer's transports opened: (the ones it reads, in priority order; its failure one)."""
    async with opened(config, consumer.transports_used) as sources:
        count = len(consumer.transports)
        yield sources[:count], (sources[count] if len(sources) > count else None)


def add_import_paths(config: Config | None) -> None:
    """Handler modules are found next to the config file and in the working directory.

    The `asyncsup` console script puts its own bin/ folder first on sys.path, not the working
    directory as `python -m` does; a container's app lives in its working directory.
    """
    folders = [os.getcwd()]
    if config is not None:
        folders.insert(0, str(Path(config.file).parent))
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def build_registry(config: Config | None, consumer: Consumer) -> HandlerRegistry:
    """Import the consumer's handler modules; a bad module or a duplicate fails here, at start."""
    add_import_paths(config)
    file = str(config.file) if config is not None else "command line"
    path = f"consumers.{consumer.name}.handlers" if config is not None else "--handlers"
    registry = HandlerRegistry.from_modules(consumer.handlers, origin=(file, path))
    if not len(registry):
        raise ConfigError(file, path, "no @handler functions found in " + ", ".join(consumer.handlers))
    return registry


def consumers_of(config: Config, transport: str) -> list[Consumer]:
    """The consumers that read a transport, named or given by its URL."""
    url = transport_url(config, transport)
    return [c for c in config.consumers.values() if url in (transport_url(config, t) for t in c.transports)]


def handler_version(config: Config | None, transport: str, message_type: str) -> int | None:
    """The version the consumers of `transport` handle `message_type` at, from their handler
    modules (imported here), or None when none of them handles it."""
    if config is None:
        return None
    found: dict[str, int] = {}
    for consumer in consumers_of(config, transport):
        registry = build_registry(config, consumer)
        if message_type in registry:
            found[consumer.name] = registry.get(message_type).version
    if len(set(found.values())) > 1:
        versions = ", ".join(f"{name} at version {v}" for name, v in sorted(found.items()))
        raise ConfigError(str(config.file), "consumers", f"{message_type} has two versions: {versions}")
    return next(iter(found.values()), None)


def find_consumer(config: Config, name: str) -> Consumer:
    consumer = config.consumers.get(name)
    if consumer is None:
        known = ", ".join(sorted(config.consumers)) or "none"
        raise ConfigError(str(config.file), "consumers", f"no consumer named {name!r} (known: {known})")
    return consumer
