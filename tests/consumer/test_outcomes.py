"""What becomes of each message: handled, retried, failed (with the reason), in priority order."""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from consumer_rig import Counter, Rig, consumer, registry, run_until_stopped, worker_for

from asyncsup.consumer.envelope import Envelope, decode, encode, new_envelope
from asyncsup.consumer.outcomes import UNDECODABLE
from asyncsup.consumer.retry import MAX_UNSETTLED_DELIVERIES
from asyncsup.consumer.worker import Worker
from asyncsup.errors import Reject, Retry
from asyncsup.lifecycle import Shutdown

pytestmark = pytest.mark.anyio


@dataclass
class Ping:
    n: int


async def test_higher_priority_transport_is_drained_first(rig: Rig) -> None:
    """Given 5 messages on `async` and 5 on `high`, all of `high` are handled before any `async`."""
    high, low = rig.source("high"), rig.source("async")
    await rig.publish(low, *({"n": n, "q": "async"} for n in range(5)))
    await rig.publish(high, *({"n": n, "q": "high"} for n in range(5)))
    seen: list[str] = []

    async def ping(body: dict[str, Any]) -> None:
        seen.append(body["q"])

    worker = Worker(consumer(concurrency=1, limit=10), [high, low], registry(("Ping", ping)),
                    shutdown=Shutdown(5))  # fmt: skip
    result = await run_until_stopped(worker)
    assert seen == ["high"] * 5 + ["async"] * 5
    assert result.statistics.handled == 10 and result.limit_reached


async def test_high_message_arriving_mid_run_overtakes_the_backlog(rig: Rig) -> None:
    """When a high message arrives while `async` has a backlog, it is next (after the prefetched one)."""
    high, low = rig.source("high"), rig.source("async")
    await rig.publish(low, *({"n": n} for n in range(20)))
    order: list[str] = []

    async def ping(body: dict[str, Any]) -> None:
        order.append(f"async{body['n']}")
        if body["n"] == 0:
            await rig.publish(high, {"n": -1}, type="Urgent")

    async def urgent(body: dict[str, Any]) -> None:
        order.append("high")

    reg = registry(("Ping", ping), ("Urgent", urgent))
    worker = Worker(consumer(concurrency=1, prefetch=1, limit=21), [high, low], reg, shutdown=Shutdown(5))
    await run_until_stopped(worker)
    assert "high" in order[1:4], order  # 1 running + at most 1 prefetched before it


async def test_failing_handler_is_retried_then_sent_to_the_failure_queue(rig: Rig) -> None:
    """max_retries=2: three attempts, then the failure queue with type, message, traceback, origin."""
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, {"n": 1})
    calls = Counter()

    async def ping(body: dict[str, Any]) -> None:
        calls.hit()
        raise ValueError(f"boom {len(calls.calls)}")

    worker = worker_for(consumer(limit=3), source, ping, failure=failed)
    result = await run_until_stopped(worker)
    assert len(calls.calls) == 3
    assert (result.statistics.retried, result.statistics.failed, result.statistics.handled) == (2, 1, 0)
    [env] = await rig.envelopes(failed)
    h = env.headers
    assert h["error"] == "ValueError: boom 3 (gave up after 3 attempts)"
    assert h["error_type"] == "ValueError" and h["attempts"] == 3 and h["origin"] == "q"
    assert "raise ValueError" in h["traceback"] and h["failed_at"].endswith("Z")
    assert env.body == {"n": 1} and env.type == "Ping"
    assert await rig.everything(source) == []  # the original was acked


async def test_retry_outcome_counts_an_attempt_and_reject_skips_retries(rig: Rig) -> None:
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, {"kind": "retry"}, {"kind": "reject"})
    calls = Counter()

    async def ping(body: dict[str, Any]) -> None:
        calls.hit(body["kind"])
        if body["kind"] == "reject":
            raise Reject("customer deleted")
        if calls.calls.count("retry") == 1:
            raise Retry(after=0.01, reason="rate limited")

    worker = worker_for(consumer(limit=3), source, ping, failure=failed)
    result = await run_until_stopped(worker)
    assert sorted(calls.calls) == ["reject", "retry", "retry"]
    assert (result.statistics.handled, result.statistics.retried, result.statistics.failed) == (1, 1, 1)
    [env] = await rig.envelopes(failed)
    assert env.headers["error"] == "rejected: customer deleted" and env.headers["attempts"] == 1
    assert env.headers["error_type"] == "asyncsup.errors.Reject" and "traceback" not in env.headers


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{this is not json", "not a JSON envelope"),
        (b"\xff\xfe\x80 not utf-8 \xc3\x28", "not a JSON envelope"),
        (encode(new_envelope("Unknown", {})), "no handler for message type 'Unknown' (known: Ping)"),
        (encode(new_envelope("Ping", {"n": "seven"})), "n: expected an integer, got string 'seven'"),
        (encode(new_envelope("Ping", {"n": 1, "extra": 2})), "unknown field(s) 'extra'"),
    ],
    ids=["malformed-json", "non-utf8", "unknown-type", "wrong-field-type", "unknown-field"],
)
async def test_bad_input_goes_to_the_failure_queue_with_the_reason(
    rig: Rig, data: bytes, reason: str
) -> None:
    """Nothing crashes and nothing is dropped: the message is in the failure queue, never retried."""
    source, failed = rig.source("q"), rig.source("failed")
    await source.transport.publish([data])
    called = Counter()

    async def ping(msg: Ping) -> None:
        called.hit()

    worker = worker_for(consumer(limit=1), source, ping, failure=failed)
    result = await run_until_stopped(worker)
    assert called.calls == [] and result.statistics.failed == 1 and result.statistics.retried == 0
    [env] = await rig.envelopes(failed)
    assert reason in env.headers["error"] and env.headers["origin"] == "q"
    if env.type == UNDECODABLE:  # the exact bytes are kept, to inspect or replay
        assert base64.b64decode(env.headers["raw_base64"]) == data
    assert await rig.everything(source) == []


async def test_ten_megabyte_body_is_handled(rig: Rig) -> None:
    source = rig.source("q")
    big = "x" * (10 * 1024 * 1024)
    await rig.publish(source, {"blob": big})
    sizes: list[int] = []

    async def ping(body: dict[str, Any]) -> None:
        sizes.append(len(body["blob"]))

    result = await run_until_stopped(Worker(consumer(limit=1), [source], registry(("Ping", ping)),
                                            shutdown=Shutdown(5)))  # fmt: skip
    assert sizes == [len(big)] and result.statistics.handled == 1
    assert await rig.everything(source) == []


async def test_sync_handler_runs_in_a_thread_not_on_the_loop(rig: Rig) -> None:
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(8)))
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def ping(body: dict[str, Any]) -> None:
        threads.append(threading.get_ident())

    result = await run_until_stopped(Worker(consumer(limit=8), [source], registry(("Ping", ping)),
                                            shutdown=Shutdown(5)))  # fmt: skip
    assert len(threads) == 8 and loop_thread not in threads
    assert result.statistics.handled == 8


async def test_message_redelivered_without_outcome_is_bounded(rig: Rig) -> None:
    """A message that keeps coming back with no outcome (its consumer died each time) is failed."""
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, {"n": 1})
    for _ in range(MAX_UNSETTLED_DELIVERIES + 1):  # received and never settled: like a kill -9
        [d] = await source.transport.receive(1, lease=30, wait=0)
        await source.transport.requeue(d, d.data, delay=0)
    called = Counter()

    async def ping(body: dict[str, Any]) -> None:
        called.hit()

    worker = worker_for(consumer(limit=1), source, ping, failure=failed)
    await run_until_stopped(worker)
    assert called.calls == []
    [env] = await rig.envelopes(failed)
    assert "without an outcome" in env.headers["error"] and "poison" in env.headers["error"]


@dataclass
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must not be negative, got {self.n}")


async def test_typed_bodies_keep_their_envelope_through_retries_and_failure(rig: Rig) -> None:
    """With msgspec a dataclass body is decoded straight from the bytes and the Envelope is made
    only when read: a handler that asks for it, a retry and the failure queue still see the whole
    message (id, body, headers), and a body class that refuses a value fails like a handler."""
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, {"n": 1}, trace="t-1")
    await rig.publish(source, {"n": -1}, type="Checked")
    [first, _] = await rig.envelopes(source)
    seen: list[tuple[int, int, dict[str, Any], str]] = []

    async def ping(msg: Ping, envelope: Envelope) -> None:
        seen.append((msg.n, envelope.attempt, envelope.body, envelope.headers["trace"]))
        raise RuntimeError(f"boom {envelope.attempt}")

    async def checked(msg: Checked) -> None:
        raise AssertionError("never called: the body class refused the message")

    reg = registry(("Ping", ping), ("Checked", checked))
    # Each message: three attempts (the rig's policy retries twice), three outcomes.
    worker = Worker(consumer(limit=6), [source], reg, shutdown=Shutdown(5), failure=failed)
    result = await run_until_stopped(worker)
    assert seen == [(1, attempt, {"n": 1}, "t-1") for attempt in (1, 2, 3)]
    assert (result.statistics.retried, result.statistics.failed) == (4, 2)
    by_type = {env.type: env for env in await rig.envelopes(failed)}
    ping_failed, checked_failed = by_type["Ping"], by_type["Checked"]
    assert (ping_failed.id, ping_failed.body, ping_failed.headers["trace"]) == (first.id, {"n": 1}, "t-1")
    assert ping_failed.headers["error"].startswith("RuntimeError: boom 3")
    assert ping_failed.headers["attempts"] == 3
    assert checked_failed.body == {"n": -1} and "n must not be negative" in checked_failed.headers["error"]


async def test_typed_body_redelivered_without_outcome_is_bounded(rig: Rig) -> None:
    """The check on messages that keep killing their consumer also holds on the typed fast path."""
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, {"n": 1})
    for _ in range(MAX_UNSETTLED_DELIVERIES + 1):
        [d] = await source.transport.receive(1, lease=30, wait=0)
        await source.transport.requeue(d, d.data, delay=0)
    called = Counter()

    async def ping(msg: Ping) -> None:
        called.hit()

    await run_until_stopped(worker_for(consumer(limit=1), source, ping, failure=failed))
    assert called.calls == []
    [env] = await rig.envelopes(failed)
    assert "poison" in env.headers["error"] and env.body == {"n": 1}


async def test_without_failure_transport_failures_are_logged_whole_then_acked(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    source = rig.source("q")
    await rig.publish(source, {"n": 1}, type="Nobody")

    async def ping(body: dict[str, Any]) -> None: ...

    with caplog.at_level(logging.WARNING, logger="asyncsup.consumer"):
        worker = Worker(consumer(limit=1), [source], registry(("Ping", ping)), shutdown=Shutdown(5))
        await run_until_stopped(worker)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dropped (no failure_transport)" in errors[0]
    assert '"body":{"n":1}' in errors[0] and '"type":"Nobody"' in errors[0]
    assert any("has no failure_transport" in r.getMessage() for r in caplog.records)
    assert await rig.everything(source) == []


async def test_retry_keeps_id_and_body_and_counts_attempts_in_the_envelope(rig: Rig) -> None:
    source = rig.source("q")
    await rig.publish(source, {"n": 1})
    attempts: list[int] = []

    async def ping(body: dict[str, Any]) -> None:
        raise RuntimeError("again")

    worker = Worker(consumer(limit=1), [source], registry(("Ping", ping)), shutdown=Shutdown(5))
    original = (await rig.envelopes(source))[0]
    await run_until_stopped(worker)  # one attempt, requeued (delay 0), then the limit stops it
    [env] = await rig.envelopes(source)
    attempts.append(env.attempt)
    assert (env.id, env.body, env.attempt) == (original.id, {"n": 1}, 2)
    assert env.headers["error"] == "RuntimeError: again"
    with anyio.fail_after(5):
        [d] = await source.transport.receive(1, lease=5, wait=5)
    assert decode(d.data).attempt == 2


async def test_handler_with_a_second_parameter_gets_the_envelope(rig: Rig) -> None:
    """Under at-least-once delivery the envelope id is the idempotency key a handler needs."""
    source = rig.source("q")
    await rig.publish(source, {"n": 1}, trace="t-1")
    await rig.publish(source, {"n": 2}, type="SyncPing")
    sent = {env.type: env.id for env in await rig.envelopes(source)}
    got: dict[str, tuple[Any, ...]] = {}

    async def ping(body: dict[str, Any], envelope: Any) -> None:
        got["Ping"] = (body, envelope.id, envelope.attempt, envelope.headers["trace"])

    def sync_ping(body: dict[str, Any], envelope: Any) -> None:
        got["SyncPing"] = (body, envelope.id)

    reg = registry(("Ping", ping), ("SyncPing", sync_ping))
    await run_until_stopped(Worker(consumer(limit=2), [source], reg, shutdown=Shutdown(5)))
    assert got == {"Ping": ({"n": 1}, sent["Ping"], 1, "t-1"), "SyncPing": ({"n": 2}, sent["SyncPing"])}
