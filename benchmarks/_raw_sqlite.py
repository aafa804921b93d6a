"""The SQLite transport's lease and ack as the raw loops of consumer.py and transports.py run them:
the transport's own statements and lease bookkeeping, without the transport around them. Import it
once the repository is on sys.path."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from asyncsup.transports._sqlite_store import ACK, LEASE, LEASE_RANGE, OPEN_LEASE, _marks, _settled


def lease(
    conn: sqlite3.Connection, queue: str, token: int, ids: Sequence[int], now: float, until: float
) -> None:
    """Mark `ids` as held by lease `token` and write the lease's row (in the caller's transaction):
    by their range when they are one, as the transport does, else by the list."""
    low, high = min(ids), max(ids)
    if high - low + 1 == len(ids):
        conn.execute(LEASE_RANGE, (token, low, high, queue, now))
    else:
        conn.execute(LEASE + _marks(len(ids)), (token, *ids))
    conn.execute(OPEN_LEASE, (token, queue, until, ",".join(map(str, ids)), len(ids)))


def ack(conn: sqlite3.Connection, token: int, ids: Sequence[int]) -> None:
    """Delete `ids` if lease `token` still holds them, and count them off the lease (in the caller's
    transaction)."""
    deleted = conn.execute(ACK + _marks(len(ids)), (token, *ids)).rowcount
    _settled(conn, token, deleted)
