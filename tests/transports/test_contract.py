"""The Transport contract, run over every transport (memory, sqlite; redis joins the same way).

Leases and delays that must *not* run out during a test are long (60 s); those a test waits for are
short (0.2-0.3 s) and are waited for through receive(wait=...), bounded by fail_after: no test
sleeps, and none asserts how long something took, only that it did not happen too early.
"""

from __future__ import annotations

import random
import time

import anyio
import pytest
from transport_rig import Opener

from asyncsup.errors import TransportClosed, TransportError
from asyncsup.transports.base import Delivery, QueueCounts, Transport
from asyncsup.transports.sqlite import SqliteTransport

pytestmark = pytest.mark.anyio

LONG = 60.0  # a lease or delay that must not run out during the test
SHORT = 0.25  # a lease or delay the test waits for
BOUND = 20.0  # the most any single wait in these tests may take before it counts as hung


def datas(deliveries: list[Delivery]) -> list[bytes]:
    return [d.data for d in deliveries]


async def receive_all(transport: Transport, *, lease: float = LONG) -> list[Delivery]:
    got: list[Delivery] = []
    while batch := await transport.receive(100, lease=lease, wait=0):
        got += batch
    return got


# --- publish and receive ---------------------------------------------------------------------


async def test_receive_returns_messages_oldest_first(transport: Transport) -> None:
    ids = await transport.publish([b"a", b"b", b"c"])
    ids += await transport.publish([b"d", b"e"])

    got = await transport.receive(10, lease=LONG, wait=0)

    assert datas(got) == [b"a", b"b", b"c", b"d", b"e"]
    assert len(set(ids)) == 5
    assert all(d.deliveries == 1 and d.queue == transport.queue for d in got)
    assert len({d.receipt for d in got}) == 5


async def test_receive_takes_at_most_max_count(transport: Transport) -> None:
    await transport.publish([bytes([i]) for i in range(7)])

    first = await transport.receive(3, lease=LONG, wait=0)
    rest = await transport.receive(10, lease=LONG, wait=0)

    assert datas(first) == [b"\x00", b"\x01", b"\x02"]
    assert datas(rest) == [bytes([i]) for i in range(3, 7)]
    assert await transport.receive(10, lease=LONG, wait=0) == []


async def test_batches_larger_than_one_statement_work(transport: Transport) -> None:
    """Given 1,200 messages, when 1,000 are received and acked at once, then 200 remain."""
    await transport.publish([str(i).encode() for i in range(1200)])

    got = await transport.receive(1000, lease=LONG, wait=0)
    await transport.ack(got)

    assert datas(got) == [str(i).encode() for i in range(1000)]
    assert await transport.counts() == QueueCounts(ready=200, in_flight=0, delayed=0)


async def test_bytes_come_back_exactly(transport: Transport) -> None:
    bodies = [b"", b"\x00\xff\x00", "é ✓".encode(), bytes(range(256)) * 40]
    await transport.publish(bodies)

    assert datas(await transport.receive(10, lease=LONG, wait=0)) == bodies


async def test_queues_are_separate(opener: Opener) -> None:
    jobs, mails = opener("jobs"), opener("mails")
    await jobs.publish([b"job"])
    await mails.publish([b"mail"])

    assert datas(await jobs.receive(10, lease=LONG, wait=0)) == [b"job"]
    assert datas(await mails.receive(10, lease=LONG, wait=0)) == [b"mail"]


async def test_transports_on_one_queue_share_it(opener: Opener) -> None:
    producer, consumer = opener("jobs"), opener("jobs")
    await producer.publish([b"1", b"2"])

    got = await consumer.receive(10, lease=LONG, wait=0)
    await consumer.ack(got)

    assert datas(got) == [b"1", b"2"]
    assert await producer.counts() == QueueCounts(ready=0, in_flight=0, delayed=0)


# --- leases ----------------------------------------------------------------------------------


async def test_a_lease_hides_the_message(transport: Transport) -> None:
    await transport.publish([b"m"])
    await transport.receive(1, lease=LONG, wait=0)

    assert await transport.receive(1, lease=LONG, wait=0) == []
    assert await transport.counts() == QueueCounts(ready=0, in_flight=1, delayed=0)


async def test_an_expired_lease_brings_the_message_back_counted(opener: Opener) -> None:
    """The second receive waits (no polling: SQLite's poll is longer than the test's bound)."""
    transport = opener(poll=BOUND * 2)
    await transport.publish([b"m"])
    first = await transport.receive(1, lease=SHORT, wait=0)

    with anyio.fail_after(BOUND):
        again = await transport.receive(1, lease=LONG, wait=BOUND * 2)

    assert datas(again) == [b"m"]
    assert (first[0].deliveries, again[0].deliveries) == (1, 2)
    assert again[0].receipt != first[0].receipt


async def test_ack_removes_for_good(transport: Transport) -> None:
    await transport.publish([b"a", b"b"])
    a, _ = await transport.receive(2, lease=LONG, wait=0)

    await transport.ack([a])

    assert await transport.counts() == QueueCounts(ready=0, in_flight=1, delayed=0)
    assert datas(await transport.browse(10)) == [b"b"]


async def test_settling_a_lost_lease_does_nothing(opener: Opener) -> None:
    """Given a lease that ran out and was given to another receive, the old receipt is inert."""
    transport = opener(poll=BOUND * 2)
    await transport.publish([b"m"])
    stale = await transport.receive(1, lease=SHORT, wait=0)
    with anyio.fail_after(BOUND):
        current = await transport.receive(1, lease=LONG, wait=BOUND * 2)

    await transport.ack(stale)
    await transport.requeue(stale[0], b"clobbered", delay=0)
    await transport.release(stale)
    await transport.extend(stale, lease=0.0)

    assert await transport.counts() == QueueCounts(ready=0, in_flight=1, delayed=0)
    assert datas(await transport.browse(10)) == [b"m"]
    await transport.ack(current)
    assert await transport.counts() == QueueCounts(ready=0, in_flight=0, delayed=0)


async def test_extend_keeps_the_message_hidden_past_its_first_lease(opener: Opener) -> None:
    """A sentinel due after the first lease's end comes first: the extended message stayed hidden."""
    transport = opener(poll=BOUND * 2)
    await transport.publish([b"extended"])
    got = await transport.receive(1, lease=SHORT, wait=0)
    await transport.extend(got, lease=LONG)
    await transport.publish([b"sentinel"], delay=SHORT * 2)

    with anyio.fail_after(BOUND):
        after = await transport.receive(10, lease=LONG, wait=BOUND * 2)

    assert datas(after) == [b"sentinel"]
    await transport.ack(got)  # the receipt still holds the extended lease
    assert await transport.counts() == QueueCounts(ready=0, in_flight=1, delayed=0)


# --- requeue and release -----------------------------------------------------------------------


async def test_requeue_replaces_the_bytes_and_delays(opener: Opener) -> None:
    transport = opener(poll=BOUND * 2)
    await transport.publish([b"old", b"later"])
    soon, later = await transport.receive(2, lease=LONG, wait=0)

    requeued_at = time.monotonic()
    await transport.requeue(soon, b"new", delay=SHORT)
    await transport.requeue(later, b"much later", delay=LONG)
    with anyio.fail_after(BOUND):
        again = await transport.receive(10, lease=LONG, wait=BOUND * 2)

    assert time.monotonic() - requeued_at >= SHORT * 0.95  # not a timing: it must not be early
    assert datas(again) == [b"new"]
    assert again[0].deliveries == 2
    assert await transport.counts() == QueueCounts(ready=0, in_flight=1, delayed=1)


async def test_requeue_without_delay_is_ready_at_once(transport: Transport) -> None:
    await transport.publish([b"m"])
    got = await transport.receive(1, lease=LONG, wait=0)

    await transport.requeue(got[0], b"m2", delay=0)

    assert datas(await transport.receive(1, lease=LONG, wait=0)) == [b"m2"]


async def test_release_gives_back_at_once_in_place_uncounted(transport: Transport) -> None:
    """Release is the drain of prefetched messages: as if never received, so no attempt is burnt."""
    await transport.publish([b"a", b"b", b"c"])
    first = await transport.receive(1, lease=LONG, wait=0)

    await transport.release(first)
    got = await transport.receive(10, lease=LONG, wait=0)

    assert datas(got) == [b"a", b"b", b"c"]
    assert [d.deliveries for d in got] == [1, 1, 1]


# --- counts, browse, remove ------------------------------------------------------------------


async def test_counts_tell_ready_in_flight_and_delayed(transport: Transport) -> None:
    await transport.publish([b"r1", b"r2", b"r3"])
    await transport.publish([b"d1", b"d2"], delay=LONG)
    await transport.receive(1, lease=LONG, wait=0)

    assert await transport.counts() == QueueCounts(ready=2, in_flight=1, delayed=2)
    assert await transport.receive(10, lease=LONG, wait=0) != []
    assert await transport.receive(10, lease=LONG, wait=0) == []  # the delayed are not early


async def test_browse_shows_everything_in_publish_order_without_leasing(
    transport: Transport,
) -> None:
    await transport.publish([b"a", b"b", b"c"])
    await transport.receive(1, lease=LONG, wait=0)

    everything = await transport.browse(10)
    window = await transport.browse(1, offset=1)

    assert datas(everything) == [b"a", b"b", b"c"]
    assert datas(window) == [b"b"]
    assert datas(await transport.receive(10, lease=LONG, wait=0)) == [b"b", b"c"]


async def test_browse_pages_on_after_the_last_receipt_into_the_delayed_messages(
    transport: Transport,
) -> None:
    """Pages of 2 after the last receipt: every message once, in browse order, delayed ones last."""
    await transport.publish([b"a", b"b", b"c"])
    for n, data in enumerate([b"x", b"y", b"z"]):  # due one after the other: a defined order
        await transport.publish([data], delay=3600 + n)
    await transport.receive(1, lease=LONG, wait=0)  # a leased one is still in its place

    pages, after = [], None
    while page := await transport.browse(2, after=after):
        pages.append(datas(page))
        after = page[-1].receipt

    assert pages == [[b"a", b"b"], [b"c", b"x"], [b"y", b"z"]]
    assert pages == [datas((await transport.browse(10))[i : i + 2]) for i in (0, 2, 4)]


async def test_remove_deletes_by_receipt_whatever_the_state(transport: Transport) -> None:
    await transport.publish([b"a", b"b", b"c"])
    leased = await transport.receive(1, lease=LONG, wait=0)
    browsed = await transport.browse(10)

    removed = await transport.remove([leased[0].receipt, browsed[2].receipt])

    assert removed == 2
    assert datas(await transport.browse(10)) == [b"b"]
    assert await transport.remove([browsed[2].receipt]) == 0
    await transport.ack(leased)  # a removed message's ack is a no-op
    assert await transport.counts() == QueueCounts(ready=1, in_flight=0, delayed=0)


async def test_a_foreign_receipt_is_a_transport_error(transport: Transport) -> None:
    foreign = Delivery("1700000000000-0", b"", 1, transport.queue)  # a Redis stream entry id

    with pytest.raises(TransportError, match="not a receipt of this transport: '1700000000000-0'"):
        await transport.remove([foreign.receipt])
    with pytest.raises(TransportError, match="not a receipt of this transport: '1700000000000-0'"):
        await transport.ack([foreign])


# --- waiting ---------------------------------------------------------------------------------


async def test_a_waiting_receive_wakes_on_publish(opener: Opener) -> None:
    """Another transport on the queue publishes; the waiter wakes at once (no poll before BOUND)."""
    consumer, producer = opener("jobs", poll=BOUND * 2), opener("jobs")
    got: list[Delivery] = []

    async def wait_for_one() -> None:
        got.extend(await consumer.receive(1, lease=LONG, wait=BOUND * 2))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_one)
            await anyio.wait_all_tasks_blocked()
            await producer.publish([b"wake"])

    assert datas(got) == [b"wake"]


async def test_a_waiting_receive_wakes_when_a_delayed_message_is_due(opener: Opener) -> None:
    transport = opener(poll=BOUND * 2)
    await transport.publish([b"delayed"], delay=SHORT)

    with anyio.fail_after(BOUND):
        got = await transport.receive(1, lease=LONG, wait=BOUND * 2)

    assert datas(got) == [b"delayed"]


async def test_a_receive_that_waits_in_vain_returns_nothing(transport: Transport) -> None:
    with anyio.fail_after(BOUND):
        assert await transport.receive(5, lease=LONG, wait=0.05) == []


# --- cancellation ------------------------------------------------------------------------------


async def test_cancelled_receives_lose_nothing(transport: Transport) -> None:
    """Given 2,000 messages, when 300 receives are cancelled at random points (before, during and
    after the claim), then every message was either handed out or is ready at once, uncounted."""
    rng = random.Random(1234)
    sent = [str(i).encode() for i in range(2000)]
    await transport.publish(sent)
    handed_out: list[Delivery] = []
    cancelled = 0

    for _ in range(300):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_after_checkpoints, scope, rng.randint(0, 6))
                handed_out += await transport.receive(rng.randint(1, 8), lease=LONG, wait=0)
                tg.cancel_scope.cancel()
        cancelled += scope.cancelled_caught
    await transport.ack(handed_out)

    assert cancelled > 0, "no receive was cancelled: the test proves nothing"
    rest = await receive_all(transport)
    assert sorted(datas(handed_out) + datas(rest)) == sorted(sent)
    assert {d.deliveries for d in rest} == {1}
    if isinstance(transport, SqliteTransport):
        assert transport.statistics().given_back > 0, "no claim was cancelled mid-way"


async def cancel_after_checkpoints(scope: anyio.CancelScope, checkpoints: int) -> None:
    for _ in range(checkpoints):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


# --- closing ---------------------------------------------------------------------------------


async def test_close_is_idempotent_and_use_after_close_raises(transport: Transport) -> None:
    await transport.publish([b"m"])
    got = await transport.receive(1, lease=LONG, wait=0)

    await transport.close()
    await transport.close()

    calls = [
        lambda: transport.publish([b"x"]),
        lambda: transport.receive(1, lease=LONG, wait=0),
        lambda: transport.ack(got),
        lambda: transport.requeue(got[0], b"x", delay=0),
        lambda: transport.release(got),
        lambda: transport.extend(got, lease=LONG),
        lambda: transport.counts(),
        lambda: transport.browse(1),
        lambda: transport.remove(["1"]),
    ]
    for call in calls:
        with pytest.raises(TransportClosed):
            await call()


async def test_close_wakes_a_waiting_receive(opener: Opener) -> None:
    transport = opener(poll=BOUND * 2)
    raised: list[BaseException] = []

    async def wait_in_vain() -> None:
        try:
            await transport.receive(1, lease=LONG, wait=BOUND * 2)
        except TransportClosed as exc:
            raised.append(exc)

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_in_vain)
            await anyio.wait_all_tasks_blocked()
            await transport.close()

    assert [type(exc) for exc in raised] == [TransportClosed]
