"""Versioned bodies through the whole worker: old messages upgraded, gaps and newer versions and
broken upcasters settled as the docs say, on memory://, sqlite:// and redis://."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from consumer_rig import Counter, Rig, consumer, run_until_stopped

from asyncsup.consumer.envelope import encode, new_envelope
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.outcomes import Source
from asyncsup.consumer.worker import Worker
from asyncsup.lifecycle import Shutdown

pytestmark = pytest.mark.anyio


@dataclass
class Size:
    width: int
    height: int


@dataclass
class Resize:
    """Version 3: v1 was {"image_id", "width"}, v2 added "height", v3 nests them in "size"."""

    __version__ = 3
    image_id: int
    size: Size


def v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
    body["height"] = body["width"] * 3 // 4  # changed in place: the worker hands a copy
    return body


def v2_to_v3(body: dict[str, Any]) -> dict[str, Any]:
    return {"image_id": body["image_id"], "size": {"width": body["width"], "height": body["height"]}}


async def publish(source: Source, version: int, *bodies: Any) -> None:
    await source.transport.publish([encode(new_envelope("Resize", b, version=version)) for b in bodies])


def registry_with(handle: Any, *upcasters: tuple[int, Any]) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.add(handle, "Resize")
    for from_version, func in upcasters:
        registry.add_upcaster(func, "Resize", from_version)
    return registry


async def test_old_messages_are_upgraded_through_the_chain_and_handled(rig: Rig) -> None:
    """Given one message of each version 1, 2 and 3 and the upcasters 1->2 and 2->3,
    the handler sees three v3 bodies, and the current one did not go through any upcaster."""
    source = rig.source("q")
    await publish(source, 1, {"image_id": 1, "width": 800})
    await publish(source, 2, {"image_id": 2, "width": 400, "height": 100})
    await publish(source, 3, {"image_id": 3, "size": {"width": 10, "height": 20}})
    seen: list[Resize] = []
    steps: list[str] = []

    async def handle(msg: Resize) -> None:
        seen.append(msg)

    def first(body: dict[str, Any]) -> dict[str, Any]:
        steps.append("1->2")
        return v1_to_v2(body)

    def second(body: dict[str, Any]) -> dict[str, Any]:
        steps.append("2->3")
        return v2_to_v3(body)

    registry = registry_with(handle, (1, first), (2, second))
    worker = Worker(consumer(concurrency=1, limit=3), [source], registry, shutdown=Shutdown(5))
    result = await run_until_stopped(worker)
    assert result.statistics.handled == 3 and result.statistics.failed == 0
    assert seen == [Resize(1, Size(800, 600)), Resize(2, Size(400, 100)), Resize(3, Size(10, 20))]
    assert steps == ["1->2", "2->3", "2->3"]
    assert await rig.everything(source) == []


async def test_a_gap_in_the_chain_sends_the_message_to_the_failure_queue(rig: Rig) -> None:
    """Given a v1 message and only the 2->3 upcaster: the handler is not called, the message goes
    to the failure queue unchanged (still version 1), the reason names the versions."""
    source, failed = rig.source("q"), rig.source("failed")
    await publish(source, 1, {"image_id": 1, "width": 800})
    calls = Counter()

    async def handle(msg: Resize) -> None:
        calls.hit(msg)

    worker = Worker(consumer(limit=1), [source], registry_with(handle, (2, v2_to_v3)),
                    shutdown=Shutdown(5), failure=failed)  # fmt: skip
    result = await run_until_stopped(worker)
    assert calls.calls == [] and result.statistics.failed == 1 and result.statistics.retried == 0
    [env] = await rig.envelopes(failed)
    assert env.version == 1 and env.body == {"image_id": 1, "width": 800}
    assert env.headers["error"] == (
        "Resize version 1 cannot be upgraded to this consumer's version 3: "
        "no upcaster from version 1 (upcasters: 2 -> 3)"
    )
    assert env.headers["error_type"] == "asyncsup.errors.VersionGap" and "traceback" not in env.headers


async def test_a_newer_message_is_retried_then_failed_never_lost(rig: Rig) -> None:
    """Given a v4 message (written by newer code) and a v3 consumer with max_retries=2: it is
    retried twice with the reason, keeps its version and body, then lands in the failure queue."""
    source, failed = rig.source("q"), rig.source("failed")
    body = {"image_id": 1, "size": {"width": 1, "height": 1}, "format": "webp"}
    await publish(source, 4, body)
    calls = Counter()

    async def handle(msg: Resize) -> None:
        calls.hit(msg)

    worker = Worker(consumer(limit=3), [source], registry_with(handle), shutdown=Shutdown(5), failure=failed)
    result = await run_until_stopped(worker)
    assert calls.calls == []
    assert (result.statistics.retried, result.statistics.failed) == (2, 1)
    [env] = await rig.envelopes(failed)
    assert env.version == 4 and env.body == body and env.headers["attempts"] == 3
    assert env.headers["error"] == (
        "Resize version 4 is newer than this consumer's 3 (gave up after 3 attempts)"
    )
    assert await rig.everything(source) == []


async def test_an_upcaster_that_raises_fails_the_message_with_its_traceback(rig: Rig) -> None:
    """Given an upcaster that raises KeyError: no retry (same bytes, same code), the failure queue
    gets the original message, the reason naming the upcaster and the traceback of its error."""
    source, failed = rig.source("q"), rig.source("failed")
    await publish(source, 2, {"image_id": 1, "wdth": 800})
    calls = Counter()

    async def handle(msg: Resize) -> None:
        calls.hit(msg)

    worker = Worker(consumer(limit=1), [source], registry_with(handle, (2, v2_to_v3)),
                    shutdown=Shutdown(5), failure=failed)  # fmt: skip
    result = await run_until_stopped(worker)
    assert calls.calls == [] and (result.statistics.retried, result.statistics.failed) == (0, 1)
    [env] = await rig.envelopes(failed)
    assert env.version == 2 and env.body == {"image_id": 1, "wdth": 800}
    assert env.headers["error"] == (
        f"upcaster {__name__}.v2_to_v3 (Resize version 2 -> 3) raised KeyError: 'width'"
    )
    assert env.headers["error_type"] == "asyncsup.errors.UpcasterFailed"
    assert "in v2_to_v3" in env.headers["traceback"] and "KeyError: 'width'" in env.headers["traceback"]


async def test_a_retried_old_message_keeps_the_body_it_was_written_with(rig: Rig) -> None:
    """A v1 message whose handler fails once: the retry re-sends the v1 body (not the upgraded one,
    although the upcaster changed its dict in place), and the second attempt upgrades it again."""
    source = rig.source("q")
    await publish(source, 1, {"image_id": 7, "width": 800})
    calls = Counter()

    async def handle(msg: Resize) -> None:
        calls.hit(msg)
        if len(calls.calls) == 1:
            raise ConnectionError("image store timed out")

    worker = Worker(consumer(limit=2), [source], registry_with(handle, (1, v1_to_v2), (2, v2_to_v3)),
                    shutdown=Shutdown(5))  # fmt: skip
    result = await run_until_stopped(worker)
    assert (result.statistics.retried, result.statistics.handled) == (1, 1)
    assert calls.calls == [Resize(7, Size(800, 600))] * 2
