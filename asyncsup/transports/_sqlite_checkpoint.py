"""WAL checkpoints on a thread of their own, so that the thread that claims and acks never runs one.

In WAL mode every commit appends pages to the -wal file, and a checkpoint copies them back into the
database file. SQLite runs one by itself (``wal_autocheckpoint``: once 1,000 frames are waiting)
inside the COMMIT that crosses the mark, on the committing connection's thread: here 12 ms for 1,100
frames (6.5 ms of CPU, the rest writes and fsync), twice in a 20,000-message consume, while that
thread — the one the consumer waits on for its next batch — does nothing else.

So a Store's connection turns it off, and after each write transaction asks its Checkpointer, which
reads how many frames wait from the wal-index header (the -shm file SQLite shares between processes;
its layout is part of the file format, https://sqlite.org/walformat.html) and past CHECKPOINT_FRAMES
starts a PASSIVE checkpoint (the kind wal_autocheckpoint runs: it copies what it can without waiting
for anyone) on its own thread and connection. The threshold is SQLite's own, so the WAL grows no
larger than it did; a reader, a writer or a checkpoint of another process goes on as before.
Where the header cannot be read (no -shm file: another VFS, exclusive locking), nothing changes:
the connection keeps SQLite's autocheckpoint.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("asyncsup.transports")

CHECKPOINT_FRAMES = 1000  # SQLite's default wal_autocheckpoint
HEADER = struct.Struct("=I4xI2xHI")  # iVersion, iChange, isInit/bigEndCksum skipped, szPage, mxFrame
BACKFILL = struct.Struct("=I")  # nBackfill: frames already copied into the database file
BACKFILL_AT = 96  # two copies of the 48-byte header come first
WAL_INDEX_VERSION = 3007000


class Checkpointer:
    """Starts a checkpoint of `path` on its own thread once enough WAL frames wait for one."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._shm = -1
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on self._thread only
        self._running: Future[None] | None = None
        self.checkpoints = 0

    def __repr__(self) -> str:
        state = "off (SQLite checkpoints itself)" if self._shm < 0 else f"{self.checkpoints} run"
        return f"<Checkpointer of {self.path}: {state}>"

    def start(self) -> bool:
        """Open the wal-index; False when it cannot be read (then let SQLite checkpoint itself)."""
        try:
            self._shm = os.open(self.path + "-shm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        if self.waiting() is None:
            self.close()
            return False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="asyncsup-sqlite-checkpoint")
        return True

    def waiting(self) -> int | None:
        """Frames in the WAL not copied into the database yet (None: not a wal-index we know)."""
        data = os.pread(self._shm, BACKFILL_AT + BACKFILL.size, 0)
        if len(data) < BACKFILL_AT + BACKFILL.size:
            return None
        version, _, _, frames = HEADER.unpack_from(data)  # the first copy: a hint is enough
        if version != WAL_INDEX_VERSION:
            return None
        max_frame: int = frames
        backfilled: int = BACKFILL.unpack_from(data, BACKFILL_AT)[0]
        return max(max_frame - backfilled, 0)

    def after_write(self) -> None:
        """After a commit: start a checkpoint if CHECKPOINT_FRAMES wait and none is running."""
        if self._thread is None or (self._running is not None and not self._running.done()):
            return
        if (self.waiting() or 0) >= CHECKPOINT_FRAMES:
            self._running = self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # another process's checkpoint, a lock: the next one copies
            log.debug("checkpoint of %s not done: %s", self.path, exc)

    def close(self) -> None:
        """Wait for a running checkpoint, then close; the file's last connection checkpoints too."""
        if self._thread is not None:
            self._thread.submit(self._close_connection)
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._shm >= 0:
            os.close(self._shm)
            self._shm = -1

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
