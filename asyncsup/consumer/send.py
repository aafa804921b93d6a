"""Sending messages from Python: ``await send(target, message)`` and ``send_batch``.

A target is a transport URL (``"sqlite:///var/q.db?queue=high"``) or a transport name from a config
(``send("high", msg, config="sample.toml")``). The message type is the message's class name
(a dataclass, msgspec Struct or pydantic model), or ``type="Name"`` for a plain dict.

Every envelope carries the version of its body (versions.py): ``version=N`` when given, else the
message class's ``__version__`` (the class the handler annotates, so both ends agree), else 1. A
plain dict has no class to say it: pass ``version=`` when its type's handler is past version 1.

``send`` opens and closes the transport each call, which is right for a message now and then;
a program that sends often keeps a ``Sender`` open::

    async with Sender("high", config="sample.toml") as sender:
        await sender.send(ResizeImage(image_id=7))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from asyncsup.config import Config
from asyncsup.consumer.bodies import to_json_data, type_name_of
from asyncsup.consumer.envelope import encode, new_envelope
from asyncsup.consumer.versions import check_version, version_of
from asyncsup.consumer.wiring import as_config, close_quietly, open_url, transport_url
from asyncsup.transports.base import Transport

SEND_BATCH = 500  # messages per publish() call: one round trip / transaction each


def message_bytes(
    message: Any,
    *,
    type: str | None = None,
    headers: Mapping[str, Any] | None = None,
    version: int | None = None,
) -> bytes:
    """One message as envelope bytes, ready to publish."""
    name = type or type_name_of(message)
    stamped = version_of(message) if version is None else check_version(version, "version")
    return encode(new_envelope(name, to_json_data(message), headers=headers, version=stamped))


class Sender:
    """An open transport to send to; use as ``async with``."""

    def __init__(self, target: str, *, config: Config | str | Path | None = None) -> None:
        self.target = target
        self._url = transport_url(as_config(config), target)
        self._transport: Transport | None = None

    def __repr__(self) -> str:
        state = "open" if self._transport is not None else "closed"
        return f"<Sender to {self.target} ({state})>"

    async def __aenter__(self) -> Sender:
        self._transport = await open_url(self._url)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await close_quietly(transport)

    async def send(
        self,
        message: Any,
        *,
        type: str | None = None,
        delay: float = 0.0,
        headers: Mapping[str, Any] | None = None,
        version: int | None = None,
    ) -> str:
        """Publish one message; returns the transport's id for it."""
        data = message_bytes(message, type=type, headers=headers, version=version)
        ids = await self._open().publish([data], delay=delay)
        return ids[0]

    async def send_batch(
        self,
        messages: Iterable[Any],
        *,
        type: str | None = None,
        delay: float = 0.0,
        version: int | None = None,
    ) -> list[str]:
        """Publish many messages, SEND_BATCH per call; returns their ids in order."""
        data = (message_bytes(m, type=type, version=version) for m in messages)
        return await self.publish_raw(data, delay=delay)

    async def publish_raw(self, data: Iterable[bytes], *, delay: float = 0.0) -> list[str]:
        """Publish envelope bytes as they are, in batches."""
        transport = self._open()
        ids: list[str] = []
        batch: list[bytes] = []
        for item in data:
            batch.append(item)
            if len(batch) >= SEND_BATCH:
                ids += await transport.publish(batch, delay=delay)
                batch = []
        if batch:
            ids += await transport.publish(batch, delay=delay)
        return ids

    def _open(self) -> Transport:
        if self._transport is None:
            raise RuntimeError(f"{self!r}: use it as `async with Sender(...) as sender`")
        return self._transport


async def send(
    target: str,
    message: Any,
    *,
    type: str | None = None,
    delay: float = 0.0,
    headers: Mapping[str, Any] | None = None,
    version: int | None = None,
    config: Config | str | Path | None = None,
) -> str:
    """Send one message to a transport URL or a configured transport name; returns its id."""
    async with Sender(target, config=config) as sender:
        return await sender.send(message, type=type, delay=delay, headers=headers, version=version)


async def send_batch(
    target: str,
    messages: Iterable[Any],
    *,
    type: str | None = None,
    delay: float = 0.0,
    version: int | None = None,
    config: Config | str | Path | None = None,
) -> list[str]:
    """Send many messages in a few round trips; returns their ids in order."""
    async with Sender(target, config=config) as sender:
        return await sender.send_batch(messages, type=type, delay=delay, version=version)
