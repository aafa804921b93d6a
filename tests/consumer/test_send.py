"""Sending from Python: by URL or by configured name, one or a batch, typed or plain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import asyncsup
from asyncsup.consumer.envelope import decode
from asyncsup.errors import UnknownTransport
from asyncsup.transports.base import open_transport

pytestmark = pytest.mark.anyio


@dataclass
class ResizeImage:
    image_id: int
    width: int = 800


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_send_a_dataclass_to_a_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db?queue=high"
    message_id = await asyncsup.send(url, ResizeImage(image_id=7), headers={"trace": "t1"})
    queue = open_transport(url)
    [delivery] = await queue.browse(10)
    env = decode(delivery.data)
    assert delivery.receipt.startswith(message_id)
    assert (env.type, env.body, env.attempt, env.headers["trace"]) == (
        "ResizeImage", {"image_id": 7, "width": 800}, 1, "t1")  # fmt: skip
    await queue.close()


async def test_send_by_transport_name_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "app.toml"
    config.write_text('[transports]\nhigh = "sqlite:///q.db?queue=high"\n')
    ids = await asyncsup.send_batch("high", [ResizeImage(n) for n in range(1200)], config=str(config))
    assert len(ids) == len(set(ids)) == 1200
    queue = open_transport(f"sqlite:///{tmp_path}/q.db?queue=high")  # relative to the config file
    assert (await queue.counts()).ready == 1200
    await queue.close()
    with pytest.raises(UnknownTransport, match="unknown transport 'low' \\(known: high\\)"):
        await asyncsup.send("low", ResizeImage(1), config=config)


async def test_plain_dicts_need_a_type_and_delay_is_kept() -> None:
    with pytest.raises(TypeError, match="pass type="):
        await asyncsup.send("memory://q", {"image_id": 1})
    await asyncsup.send("memory://q", {"image_id": 1}, type="DeleteImage", delay=3600)
    queue = open_transport("memory://q")
    counts = await queue.counts()
    assert (counts.ready, counts.delayed) == (0, 1)
    [delivery] = await queue.browse(1)
    assert decode(delivery.data).type == "DeleteImage"


async def test_a_sender_keeps_its_transport_open() -> None:
    async with asyncsup.Sender("memory://kept") as sender:
        await sender.send(ResizeImage(1))
        await sender.send_batch([ResizeImage(2), ResizeImage(3)])
        assert "open" in repr(sender)
    assert "closed" in repr(sender)
    with pytest.raises(RuntimeError, match="async with"):
        await sender.send(ResizeImage(4))
    assert (await open_transport("memory://kept").counts()).ready == 3
