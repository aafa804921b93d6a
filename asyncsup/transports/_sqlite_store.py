"""The SQLite queue's SQL, run synchronously on the one thread that owns the connection.

What a commit survives (journal_mode=WAL always):

- ``synchronous=NORMAL`` (the default): a transaction is written to the WAL file before COMMIT
  returns, so it survives the *process* dying at any moment (kill -9, OOM killer, a crash). A power
  loss or a kernel crash can lose the transactions committed since the last checkpoint (SQLite syncs
  the WAL only at checkpoints), but never corrupts the file.
- ``synchronous=FULL`` (``?synchronous=full``): the WAL is fsynced at every commit, so a commit
  also survives a power loss, at the price of one fsync per transaction (every call is a batch).

"Acked" means the DELETE committed; "received" means the lease committed. So a message is always
either ready (or delayed), leased in the file (and back when the lease runs out), or gone because acked.

The schema: one table of messages for every queue of a file, and one of leases. A message is
receivable when ``available_at <= now`` (its publish time, or the end of a delay) and no lease holds
it; the index on (queue, available_at) covers only messages that no lease holds, so a receive is one
index range scan, O(log n) with a million messages queued, and a lease takes its messages out of the
index (one index delete each) while the ack that follows deletes rows that are in no index: each
message costs the index one insert and one delete, as in a queue with no leases at all. (Schema 1
moved a leased message's ``available_at`` to the lease's end instead: an index delete and insert to
lease, another delete to ack; 1.3x slower on the same claim-and-ack loop.) A lease is one row per
claimed batch: its token (in the receipts of its messages), its end, the ids it took and how many
of them are not settled yet; when it ends, the claim that comes next gives its unsettled messages
back first. Times are unix time (``time.time()``), the one clock every process on the machine
shares; a step of the system clock moves due times and lease ends with it.

A lease writes only the token into its messages' rows: how many times a message was delivered
(``deliveries``, for the consumer's check on messages that keep killing it) counts the deliveries
that did not end in an ack, a release or a removal, and is counted when that is known: when a lease
ends unsettled (given back) or the message is requeued for a retry. A receipt says stored + 1, the
current delivery. Counted at the lease instead, as files of format 2 did, the UPDATE that leases a
batch costs 1.5 µs per message instead of 1.1 (measured on this file's table).

A file written by asyncsup with schema 1 (table asyncsup_messages) is moved to this one when a
connection opens it: every message kept in its order, leased ones made receivable again (their
consumers' receipts no longer settle anything, so they are delivered again: at least once). A file
of format 2 (this schema, deliveries counted at the lease; ``PRAGMA user_version`` 0) has the
current delivery taken off its leased messages' counts. FORMAT is the file's user_version.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from itertools import accumulate, repeat
from pathlib import Path

from asyncsup.errors import TransportError
from asyncsup.transports._sqlite_checkpoint import Checkpointer
from asyncsup.transports.base import Delivery, QueueCounts, lease_receipt

TABLE = "asyncsup_queue"
LEASES = "asyncsup_leases"
SCHEMA_1_TABLE = "asyncsup_messages"
FORMAT = 3  # 1: schema 1; 2: this schema, deliveries counted at the lease; 3: counted when known

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a receipt names one message
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        available_at REAL NOT NULL,  -- unix time it is receivable from: publish time or a delay's end
        lease_token INTEGER,         -- the lease (a row of LEASES) holding it; NULL when not leased
        deliveries INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    # Only messages no lease holds. The rowid is implicitly the last column, so "ORDER BY
    # available_at, id" needs no sort.
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ready ON {TABLE} (queue, available_at) WHERE lease_token IS NULL",
    f"""CREATE TABLE IF NOT EXISTS {LEASES} (
        token INTEGER PRIMARY KEY,  -- 63 random bits, in the receipts of the messages it holds
        queue TEXT NOT NULL,
        until REAL NOT NULL,        -- when its unsettled messages become receivable again
        ids TEXT NOT NULL,          -- the ids of the messages it took, comma-separated
        open INTEGER NOT NULL       -- how many of them are not settled (acked, requeued, released)
    )""",
    f"CREATE INDEX IF NOT EXISTS {LEASES}_until ON {LEASES} (queue, until)",
)
# Schema 1 to this one, in the connection's first transaction: new ids in the old order.
FROM_SCHEMA_1 = (
    f"INSERT INTO {TABLE} (queue, body, available_at, deliveries, created_at)"
    " SELECT queue, body, CASE WHEN lease_token IS NULL THEN available_at"
    " ELSE MIN(available_at, created_at) END, deliveries, created_at"
    f" FROM {SCHEMA_1_TABLE} ORDER BY id"
)

# A claim is a SELECT of the oldest ready rows then an UPDATE of the same rows, in one BEGIN
# IMMEDIATE transaction (nobody else can write in between, so both see the same rows). Not UPDATE ...
# RETURNING: it needs SQLite 3.35, returns rows in no defined order, and measured no faster here.
INSERT = f"INSERT INTO {TABLE} (queue, body, available_at, created_at) VALUES (?, ?, ?, ?)"
FIRST_DUE = (
    f"SELECT available_at FROM {TABLE} WHERE queue = ? AND lease_token IS NULL ORDER BY available_at LIMIT 1"
)
FIRST_LEASE_END = f"SELECT MIN(until) FROM {LEASES} WHERE queue = ?"
# Both in one statement: each statement is a trip through the GIL for the connection's thread,
# which waits for it while the event loop is busy (see consumer/worker.py).
NEXT_TIMES = f"SELECT ({FIRST_DUE}), ({FIRST_LEASE_END})"
READY = (
    f"SELECT id, body, deliveries FROM {TABLE}"
    " WHERE queue = ? AND available_at <= ? AND lease_token IS NULL ORDER BY available_at, id LIMIT ?"
)
# The claim's SELECT packs the whole batch into one row (ids and body sizes as comma-separated text,
# the bodies end to end in one blob), and its UPDATE finds the rows by their id range or the same
# query (LEASE_RANGE, LEASE_READY): each statement is one step of SQLite with the GIL released. Row
# by row, the thread needs the GIL back after every row, and waits for it as long as the event loop
# is busy with a batch: with the whole batch in one step, the claim runs while the loop works (see
# consumer/worker.py). group_concat keeps the order of the subquery's rows. A batch too big for one
# value (SQLite's length limit, 1 GB by default) is read row by row instead.
READY_PACKED = (
    "SELECT group_concat(id), max(deliveries), group_concat(length(CAST(body AS BLOB))),"
    f" CAST(group_concat(body, '') AS BLOB), min(id), max(id) FROM ({READY})"
)
# Most batches are first deliveries only (max 0 above): their counts go without saying. Else this
# reads them, in the same transaction, so of the same rows.
READY_COUNTS = f"SELECT group_concat(deliveries + 1) FROM ({READY})"
LEASE_READY = (
    f"UPDATE {TABLE} SET lease_token = ?"
    f" WHERE id IN (SELECT id FROM {TABLE} WHERE queue = ? AND available_at <= ? AND lease_token IS NULL"
    " ORDER BY available_at, id LIMIT ?)"
)
# The usual batch is every id from its lowest to its highest (a queue read in order): then the lease
# marks that range, a rowid range scan, instead of running the claim's query again (0.66 against
# 0.78 µs a row). "+": keeps the planner off the ready index, which it would pick (2 µs a row).
LEASE_RANGE = (
    f"UPDATE {TABLE} SET lease_token = ?"
    " WHERE id BETWEEN ? AND ? AND +queue = ? AND +available_at <= ? AND lease_token IS NULL"
)
OPEN_LEASE = f"INSERT INTO {LEASES} (token, queue, until, ids, open) VALUES (?, ?, ?, ?, ?)"
ENDED_LEASES = f"SELECT token, ids FROM {LEASES} WHERE queue = ? AND until <= ?"
CLOSE_LEASE = f"DELETE FROM {LEASES} WHERE token = ?"
# Batches name their rows in one IN list (a statement per batch, not per row: twice as fast as
# executemany); a list holds at most CHUNK ids, well under SQLite's limit on parameters.
CHUNK = 500
# (Claims lease with LEASE_RANGE or LEASE_READY; the raw loops of benchmarks/ lease a batch that is
# no range by ids with this.)
LEASE = f"UPDATE {TABLE} SET lease_token = ? WHERE id IN "
# An ended lease's unsettled messages: delivered, not settled, counted now.
GIVE_BACK = (
    f"UPDATE {TABLE} SET lease_token = NULL, deliveries = deliveries + 1"
    " WHERE lease_token = ? AND id IN "
)
ACK = f"DELETE FROM {TABLE} WHERE lease_token = ? AND id IN "
# When a lease's acked ids are every id from the first to the last (the usual case: a batch handled
# in order), one range says the same: a primary key range scan, no list to bind or look up.
ACK_RANGE = f"DELETE FROM {TABLE} WHERE lease_token = ? AND id BETWEEN ? AND ?"
# After messages of a lease were settled: count them off, and drop the lease when none is left.
SETTLED = f"UPDATE {LEASES} SET open = open - ? WHERE token = ?"
CLOSE_SETTLED = f"DELETE FROM {LEASES} WHERE token = ? AND open <= 0"
REQUEUE = (
    f"UPDATE {TABLE} SET body = ?, available_at = ?, lease_token = NULL, deliveries = deliveries + 1"
    " WHERE id = ? AND lease_token = ?"
)
# Back where it was (available_at is its own, untouched by the lease), the delivery uncounted.
RELEASE = f"UPDATE {TABLE} SET lease_token = NULL WHERE id = ? AND lease_token = ?"
EXTEND = f"UPDATE {LEASES} SET until = ? WHERE token = ?"
COUNT_READY = f"SELECT COUNT(*) FROM {TABLE} WHERE queue = ? AND available_at <= ? AND lease_token IS NULL"
COUNT_DELAYED = f"SELECT COUNT(*) FROM {TABLE} WHERE queue = ? AND available_at > ? AND lease_token IS NULL"
COUNT_LEASED = f"SELECT until > ?, SUM(open) FROM {LEASES} WHERE queue = ? GROUP BY 1"
# A leased message's current delivery counts, as in its receipt.
BROWSED = f"SELECT id, body, deliveries + (lease_token IS NOT NULL) FROM {TABLE}"
BROWSE = f"{BROWSED} WHERE queue = ? ORDER BY id LIMIT ? OFFSET ?"
# "+queue": walk the primary key from the last id seen; on the queue's index SQLite would sort all of
# the queue's rows for every page.
BROWSE_AFTER = f"{BROWSED} WHERE +queue = ? AND id > ? ORDER BY id LIMIT ?"
HOLDER = f"SELECT lease_token FROM {TABLE} WHERE id = ? AND queue = ?"
REMOVE = f"DELETE FROM {TABLE} WHERE id = ? AND queue = ?"

Packed = tuple[str, str | None, str, bytes]  # ids, delivery counts (None: all 1), body sizes, bodies


class Batch:
    """What a claim took, handed from the connection's thread to the loop as SQLite packed it.

    ``deliveries()`` unpacks it on the loop: on the thread, the Python that makes a Delivery per
    message would wait for the GIL at every switch interval while the loop handles the batch before
    (and make the loop wait in turn); on the loop it runs in one go. Measured: 8-10 % faster.
    A batch too big to pack comes as deliveries already.
    """

    __slots__ = ("_packed", "_queue", "_suffix", "_unpacked", "ids", "size", "span")

    def __init__(
        self,
        queue: str,
        packed: Packed | None = None,
        suffix: str = "",
        unpacked: Sequence[Delivery] = (),
        ids: str = "",
        span: tuple[int, int] = (0, -1),
    ) -> None:
        self._queue = queue
        self._packed = packed
        self._suffix = suffix  # ":<token>" that ends each receipt
        self._unpacked = unpacked
        self.ids = packed[0] if packed is not None else ids  # comma-separated, for the lease row
        self.size = len(unpacked) if packed is None else self.ids.count(",") + 1
        self.span = span  # the lowest and the highest id

    def __repr__(self) -> str:
        return f"<Batch of {self.size} from {self._queue!r}>"

    def deliveries(self) -> list[Delivery]:
        if self._packed is None:
            return list(self._unpacked)
        ids, counts, sizes, data = self._packed
        # "1,2" -> "1:tok,2:tok": a receipt per id in two C calls (in SQL, 150 ns a row)
        receipts = (ids.replace(",", self._suffix + ",") + self._suffix).split(",")
        ends = list(accumulate(map(int, sizes.split(","))))
        bodies = map(data.__getitem__, map(slice, [0, *ends[:-1]], ends))
        count = repeat(1) if counts is None else map(int, counts.split(","))
        return list(map(Delivery, receipts, bodies, count, repeat(self._queue)))


Claimed = tuple[Batch, float | None]


class Store:
    """One connection to one database file. Every method runs on the connection's own thread."""

    def __init__(self, path: str, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._checkpointer = Checkpointer(path, busy_timeout)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise TransportError(f"the SQLite connection to {self.path} is closed")
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the write
        # lock up front and waits busy_timeout for it, instead of failing on a lock upgrade.
        if self.path != ":memory:":  # a fresh deployment has no var/ yet: make the folder
            with suppress(OSError):  # if we may not, sqlite3 says so below, mapped to TransportError
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            self._switch_to_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            with _write(conn):
                for statement in SCHEMA:
                    conn.execute(statement)
                _upgrade(conn)
            if self._checkpointer.start():  # off this thread from now on (_sqlite_checkpoint.py)
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; after its commit, a checkpoint in the background if one is due."""
        conn = self._connection()
        with _write(conn):
            yield conn
        self._checkpointer.after_write()

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """WAL mode is stored in the file; the first connection to a new file switches it.

        Connections racing to switch a new file fail with "database is locked" at once: SQLite
        does not call the busy handler there. So retry, briefly and with jitter, up to the busy
        timeout. This runs once per connection, on its own thread, never on the event loop.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.001, 0.02))
        if str(mode).lower() != "wal":
            raise TransportError(f"{self.path}: cannot use WAL journaling (got {mode!r})")

    def publish(self, queue: str, bodies: Sequence[bytes], delay: float) -> list[int]:
        if not bodies:
            return []
        with self._transaction() as conn:
            now = time.time()
            at = now + max(delay, 0.0)
            conn.executemany(INSERT, [(queue, body, at, now) for body in bodies])
            # We hold the write lock and ids are AUTOINCREMENT: ours are consecutive.
            last = conn.execute("SELECT last_insert_rowid()").fetchall()[0][0]
        return list(range(last - len(bodies) + 1, last + 1))

    def claim(self, queue: str, max_count: int, lease: float) -> Claimed:
        """Lease up to max_count ready messages, oldest first; else (an empty batch, when the next
        message or lease end is due, or None)."""
        conn = self._connection()
        # Plain reads first: an idle queue costs no write lock, which other processes would feel.
        first_due, first_end = conn.execute(NEXT_TIMES, (queue, queue)).fetchone()
        now = time.time()
        ended = first_end is not None and first_end <= now
        if not ended and (first_due is None or first_due > now):
            return Batch(queue), min((t for t in (first_due, first_end) if t is not None), default=None)
        token = secrets.randbits(63)
        suffix = lease_receipt(0, token)[1:]  # ":<token>", formatted once per batch
        with self._transaction():
            now = time.time()
            if ended:
                _give_back_ended(conn, queue, now)
            got = _ready(conn, queue, now, max_count, suffix)
            if got.size:
                leased = _lease(conn, got, token, queue, now, max_count)
                if leased != got.size:  # cannot happen while we hold the write lock; never hand out
                    raise TransportError(f"claimed {got.size} messages but leased {leased}")  # unleased
                conn.execute(OPEN_LEASE, (token, queue, now + lease, got.ids, got.size))
        return got, None

    def ack(self, by_token: Mapping[int, list[int]]) -> None:
        """Delete leased messages: ids by the token of the lease they must still hold."""
        if not by_token:
            return
        with self._transaction() as conn:
            for token, all_ids in by_token.items():
                ids = sorted(set(all_ids))
                if ids and ids[-1] - ids[0] + 1 == len(ids):  # no id of the range missing
                    done = conn.execute(ACK_RANGE, (token, ids[0], ids[-1])).rowcount
                else:
                    done = sum(conn.execute(ACK + _marks(len(c)), (token, *c)).rowcount for c in _chunks(ids))
                _settled(conn, token, done)

    def requeue(self, message_id: int, token: int, body: bytes, delay: float) -> None:
        at = time.time() + max(delay, 0.0)
        self._settle(REQUEUE, [(body, at, message_id, token)])

    def release(self, pairs: Sequence[tuple[int, int]]) -> None:
        self._settle(RELEASE, list(pairs))

    def extend(self, pairs: Sequence[tuple[int, int]], lease: float) -> None:
        """A lease's end is its batch's: extending one message extends its whole lease."""
        until = time.time() + lease
        self._write_many(EXTEND, [(until, token) for token in sorted({token for _, token in pairs})])

    def remove(self, queue: str, ids: Sequence[int]) -> int:
        removed = 0
        with self._transaction() as conn:
            for message_id in ids:
                holder = conn.execute(HOLDER, (message_id, queue)).fetchall()
                if conn.execute(REMOVE, (message_id, queue)).rowcount:
                    removed += 1
                    if holder[0][0] is not None:
                        _settled(conn, holder[0][0], 1)
        return removed

    def _settle(self, sql: str, params: Sequence[tuple[object, ...]]) -> None:
        """Run `sql` once per params (each ending with the lease token it must match) in one
        transaction, and count off from each lease the messages it settled."""
        if not params:
            return
        with self._transaction() as conn:
            done: Counter[int] = Counter()
            for args in params:
                token = args[-1]
                assert isinstance(token, int)
                done[token] += conn.execute(sql, args).rowcount
            for token, count in done.items():
                _settled(conn, token, count)

    def _write_many(self, sql: str, params: Sequence[tuple[object, ...]]) -> int:
        """One statement over a batch, in one transaction; how many rows it changed."""
        if not params:
            return 0
        with self._transaction() as conn:
            changed = conn.executemany(sql, params).rowcount
        return changed

    def counts(self, queue: str) -> QueueCounts:
        conn = self._connection()
        with _read(conn):
            now = time.time()
            ready = conn.execute(COUNT_READY, (queue, now)).fetchall()[0][0]
            delayed = conn.execute(COUNT_DELAYED, (queue, now)).fetchall()[0][0]
            leased = dict(conn.execute(COUNT_LEASED, (now, queue)).fetchall())
        # An ended lease's messages are receivable: the next claim gives them back first.
        return QueueCounts(ready=ready + leased.get(0, 0), in_flight=leased.get(1, 0), delayed=delayed)

    def browse(self, queue: str, limit: int, offset: int, after: int | None) -> list[Delivery]:
        if after is None:
            rows = self._connection().execute(BROWSE, (queue, limit, offset)).fetchall()
        else:  # the primary key's order: a range seek, whatever the depth
            rows = self._connection().execute(BROWSE_AFTER, (queue, after, limit)).fetchall()
        return [Delivery(str(i), body, n, queue) for i, body, n in rows]

    def close(self) -> None:
        self._closed = True
        self._checkpointer.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _ready(conn: sqlite3.Connection, queue: str, now: float, limit: int, suffix: str) -> Batch:
    """The oldest ready messages, read in one step (READY_PACKED), leased with receipts ending in
    `suffix`; read row by row when the batch is too big for one value."""
    try:
        row = conn.execute(READY_PACKED, (queue, now, limit)).fetchone()
    except sqlite3.DataError:  # "string or blob too big"
        rows = conn.execute(READY, (queue, now, limit)).fetchall()
        batch = [Delivery(f"{i}{suffix}", body, n + 1, queue) for i, body, n in rows]
        ids = [row[0] for row in rows]
        span = (min(ids), max(ids)) if ids else (0, -1)
        return Batch(queue, unpacked=batch, ids=",".join(map(str, ids)), span=span)
    if row[0] is None:
        return Batch(queue)
    ids, most, sizes, data, low, high = row
    counts = conn.execute(READY_COUNTS, (queue, now, limit)).fetchone()[0] if most else None
    return Batch(queue, packed=(ids, counts, sizes, data), suffix=suffix, span=(low, high))


def _lease(conn: sqlite3.Connection, got: Batch, token: int, queue: str, now: float, limit: int) -> int:
    """Mark the claimed rows with the lease's token; how many it marked (all, as we hold the lock)."""
    low, high = got.span
    if high - low + 1 == got.size:  # distinct ids, as many as the range holds: exactly that range
        return conn.execute(LEASE_RANGE, (token, low, high, queue, now)).rowcount
    return conn.execute(LEASE_READY, (token, queue, now, limit)).rowcount


def _give_back_ended(conn: sqlite3.Connection, queue: str, now: float) -> None:
    """Leases that ran out: their unsettled messages become receivable (their consumer died, or
    stopped extending), and the leases go."""
    for token, ids in conn.execute(ENDED_LEASES, (queue, now)).fetchall():
        for chunk in _chunks([int(i) for i in ids.split(",")]):
            conn.execute(GIVE_BACK + _marks(len(chunk)), (token, *chunk))
        conn.execute(CLOSE_LEASE, (token,))


def _settled(conn: sqlite3.Connection, token: int, count: int) -> None:
    if count:
        conn.execute(SETTLED, (count, token))
        conn.execute(CLOSE_SETTLED, (token,))


def _upgrade(conn: sqlite3.Connection) -> None:
    """A file of an older format becomes one of this FORMAT (see the module docstring)."""
    if conn.execute("PRAGMA user_version").fetchall()[0][0] >= FORMAT:
        return
    old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    if conn.execute(old, (SCHEMA_1_TABLE,)).fetchall():
        conn.execute(FROM_SCHEMA_1)
        conn.execute(f"DROP TABLE {SCHEMA_1_TABLE}")
    else:  # format 2, or a new file (no leased message: nothing changes)
        conn.execute(f"UPDATE {TABLE} SET deliveries = deliveries - 1 WHERE lease_token IS NOT NULL")
    conn.execute(f"PRAGMA user_version = {FORMAT}")


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _marks(count: int) -> str:
    return "(" + ",".join("?" * count) + ")"


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds the write lock from its start (waits busy_timeout for it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction: several SELECTs see one snapshot."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")
