"""open_transport(url): schemes, queue names, paths, options, and the errors for what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asyncsup.errors import MissingExtra, TransportError, UnknownTransport
from asyncsup.transports.base import Transport, open_transport, parse_receipt
from asyncsup.transports.memory import MemoryBroker, MemoryTransport
from asyncsup.transports.sqlite import SqliteTransport


def sqlite(url: str) -> SqliteTransport:
    transport = open_transport(url)
    assert isinstance(transport, SqliteTransport)
    return transport


@pytest.mark.parametrize(
    ("url", "queue"),
    [
        ("memory://jobs", "jobs"),
        ("memory://?queue=jobs", "jobs"),
        ("memory://jobs?queue=jobs", "jobs"),
        ("memory://", "default"),
    ],
)
def test_memory_urls_name_the_queue(url: str, queue: str) -> None:
    transport = open_transport(url)

    assert isinstance(transport, MemoryTransport)
    assert isinstance(transport, Transport)
    assert (transport.url, transport.queue) == (url, queue)


def test_sqlite_paths_are_relative_to_the_current_directory_or_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    relative = sqlite("sqlite:///var/queue.db?queue=high")
    absolute = sqlite(f"sqlite:///{tmp_path}/abs.db")
    spaced = sqlite("sqlite:///my%20queue.db")

    assert (relative.path, relative.queue) == (str(tmp_path / "var" / "queue.db"), "high")
    assert (absolute.path, absolute.queue) == (str(tmp_path / "abs.db"), "default")
    assert spaced.path == str(tmp_path / "my queue.db")
    assert isinstance(relative, Transport)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://a?queue=b", "two queue names, 'a' and 'b'"),
        ("memory://jobs/x", "takes a queue name, not a path"),
        ("memory://jobs?qeue=x", "unknown option 'qeue' (did you mean 'queue'?) (known: queue)"),
        ("sqlite://host/q.db", "expected sqlite:///relative/path.db or sqlite:////absolute/path.db"),
        ("sqlite://", "needs a database file path"),
        ("sqlite:///:memory:", "for a test queue use memory://"),
        ("sqlite:///q.db?queue=a&queue=b", "option 'queue' given twice"),
        ("sqlite:///q.db?synchronous=off", "option 'synchronous': expected normal or full"),
        ("sqlite:///q.db?poll=soon", "option 'poll': expected seconds >= 0, got 'soon'"),
        ("sqlite:///q.db?busy_timeout=-1", "option 'busy_timeout': expected seconds >= 0"),
        ("sqlite:///q.db?pol=1", "unknown option 'pol' (did you mean 'poll'?)"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(TransportError) as caught:
        open_transport(url)

    assert str(caught.value).startswith(url + ": ")
    assert message in str(caught.value)


def test_an_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownTransport) as caught:
        open_transport("amqp://localhost/jobs")

    assert caught.value.name == "amqp"
    assert str(caught.value) == "unknown transport 'amqp' (known: memory, redis, rediss, sqlite)"


def test_redis_opens_the_redis_transport_when_its_extra_is_installed() -> None:
    pytest.importorskip("redis")
    from asyncsup.transports.redis import RedisTransport

    transport = open_transport("redis://127.0.0.1:6379/0")  # connects lazily: nothing to close

    assert isinstance(transport, RedisTransport)
    assert transport.queue == "default"


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_redis_without_its_extra_names_the_install_command(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` sees when not installed

    with pytest.raises(MissingExtra) as caught:
        open_transport(f"{scheme}://127.0.0.1:6379/0")

    assert str(caught.value) == "the Redis transport needs an extra: pip install 'asyncsup[redis]'"


def test_receipts_carry_the_message_id_and_the_lease_token() -> None:
    assert parse_receipt("42:ff") == (42, 255)
    assert parse_receipt("42") == (42, None)
    with pytest.raises(TransportError, match="not a receipt of this transport: '1-0'"):
        parse_receipt("1-0")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_memory_queues_are_shared_per_broker(anyio_backend: str) -> None:
    """Same name, same broker (the event loop's by default): one queue. Another broker: another."""
    default_a, default_b = open_transport("memory://jobs"), open_transport("memory://jobs")
    own = open_transport("memory://jobs", memory=MemoryBroker())

    await default_a.publish([b"shared"])

    assert [d.data for d in await default_b.receive(1, lease=60, wait=0)] == [b"shared"]
    assert await own.receive(1, lease=60, wait=0) == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_reprs_say_the_state_in_words(anyio_backend: str, tmp_path: Path) -> None:
    broker = MemoryBroker()
    memory = open_transport("memory://jobs", memory=broker)
    db = open_transport(f"sqlite:///{tmp_path}/q.db?queue=jobs")
    await memory.publish([b"a", b"b"])

    assert repr(memory) == "<MemoryTransport memory://jobs open, 2 messages held>"
    assert repr(broker) == "<MemoryBroker, queues held: jobs: 2>"
    assert repr(db) == f"<SqliteTransport queue 'jobs' in {tmp_path}/q.db, open>"
    await memory.close()
    await db.close()
    assert repr(memory) == "<MemoryTransport memory://jobs closed>"
    assert repr(db) == f"<SqliteTransport queue 'jobs' in {tmp_path}/q.db, closed>"
