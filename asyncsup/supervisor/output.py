"""Children's output: read from pipes by the loop, framed into whole lines, written by a thread.

Reading uses a Protocol on our own pipe (no StreamReader, no task per child): each chunk is split at
its last newline and prefixed with one bytes.replace, which keeps the relay near the speed of a raw
chunk copy. Writing goes through a LineSink: a dedicated thread does the blocking writes, so a slow
terminal or a full docker log pipe never blocks the loop, and every write is whole lines, so lines of
two programs never interleave. When a sink's buffer is full the pipe is paused; the child then blocks on
its own write, which bounds our memory whatever a child prints.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import json
import os
import re
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from .tail import OutputTail

MAX_LINE = 64 * 1024  # a longer "line" is cut, so one child cannot make us buffer without bound
PIPE_SIZE = 1024 * 1024  # F_SETPIPE_SZ: fewer wakeups per MB (measured ~40% faster relay)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


Chunk = bytes | memoryview  # immutable bytes, or a view of them: held, never copied, until written
WriteChunks = Callable[[list[Chunk]], None]
TryWrite = Callable[[list[Chunk]], "list[Chunk] | None"]  # what is left; None: never try again


class LineSink:
    """Whole-line writes to one destination, done by one thread; safe to call from any thread.

    The sink queues references to the chunks it is given, not a copy: the text relay's framed
    chunk goes from bytes.replace() straight to writev(). Copying into one growing buffer cost a
    memmove of every byte plus fresh pages for the buffer (the minor faults that made our relay
    CPU per MB higher than supervisord's).
    """

    def __init__(
        self, name: str, write: WriteChunks, limit: int = 1024 * 1024, try_write: TryWrite | None = None
    ) -> None:
        self.name = name
        self.limit = limit
        self._write = write
        # A write that cannot block, tried by the caller while the writer thread has nothing to
        # do: a pipe that has room takes the lines at once, without waking the thread.
        self._try_write = try_write
        self._chunks: list[Chunk] = []
        self._size = 0  # bytes in _chunks
        self._writing = False  # the writer thread holds chunks it has not finished writing
        self._cond = threading.Condition()
        self._closed = False
        self._on_space: list[Callable[[], None]] = []
        # Run by the writer thread, each at its place in the stream: (chunks queued before it, call).
        self._calls: list[tuple[int, Callable[[], None]]] = []
        self._thread = threading.Thread(target=self._run, name=f"asyncsup-sink-{name}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._size} bytes pending"
        return f"<LineSink {self.name}: {state}>"

    def write(self, *parts: Chunk) -> bool:
        """Queue whole lines (given in pieces, kept together); False means the buffer is over its
        limit (pause the producer). The parts must not change afterwards: bytes, or views of bytes."""
        with self._cond:
            queued = [part for part in parts if part]
            if self._try_write is not None and not (self._chunks or self._writing or self._calls):
                left = self._try_write(queued)  # nothing queued or being written: order is kept
                if left is None:
                    self._try_write = None
                else:
                    queued = left
            if queued:
                self._chunks += queued
                self._size += sum(len(part) for part in queued)
                self._cond.notify()
            return self._size < self.limit

    def when_space(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the writer thread) once the buffer has drained below its limit."""
        with self._cond:
            if self._size < self.limit:
                callback()
            else:
                self._on_space.append(callback)

    def call_in_writer(self, call: Callable[[], None]) -> None:
        """Run `call` on the writer thread once what is queued now is written (a log reopen: the
        writer may be in the middle of a write to the file, so only it may swap the file)."""
        with self._cond:
            self._calls.append((len(self._chunks), call))
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (bounded by timeout) and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._chunks and not self._calls and not self._closed:
                    self._cond.wait()
                if not self._chunks and not self._calls:
                    return
                chunks, self._chunks, self._size = self._chunks, [], 0
                calls, self._calls = self._calls, []
                self._writing = True
            done = 0
            for at, call in calls:  # lines queued before a reopen go to the old file, later ones not
                self._write_quietly(chunks[done:at])
                done = at
                with contextlib.suppress(OSError):
                    call()
            self._write_quietly(chunks[done:] if done else chunks)
            with self._cond:
                self._writing = False
            self._call_space_waiters()

    def _write_quietly(self, chunks: list[Chunk]) -> None:
        if chunks:
            with contextlib.suppress(OSError):  # a closed stdout must not kill the supervisor
                self._write(chunks)

    def _call_space_waiters(self) -> None:
        with self._cond:
            waiters, self._on_space = self._on_space, []
        for callback in waiters:
            callback()


IOV_MAX = 1024  # writev's limit on buffers per call (Linux)


def fd_writer(fd: int) -> WriteChunks:
    """A write function that writes every chunk, in order, to a (blocking) file descriptor."""
    return lambda chunks: writev_all(fd, chunks)


def nowait_writer(fd: int) -> TryWrite | None:
    """A write that never blocks, for a pipe: pwritev2 with RWF_NOWAIT (Linux >= 6.5 for pipes).

    Setting O_NONBLOCK instead would change the file description we share with whoever else
    writes to it (a terminal, the other programs of a container). Returns the chunks not written;
    None when the kernel or the fd does not support it (a terminal, a regular file, an old kernel).
    """
    nowait = getattr(os, "RWF_NOWAIT", None)
    if nowait is None or not hasattr(os, "pwritev"):
        return None

    def try_write(chunks: list[Chunk]) -> list[Chunk] | None:
        try:
            written = os.pwritev(fd, chunks[:IOV_MAX], -1, nowait)
        except BlockingIOError:
            return chunks
        except OSError as exc:  # EOPNOTSUPP, ESPIPE, EINVAL: not possible here; EPIPE: the writer says
            return chunks if exc.errno == errno.EPIPE else None
        return _unwritten(chunks, written)

    return try_write


def _unwritten(chunks: list[Chunk], written: int) -> list[Chunk]:
    for index, chunk in enumerate(chunks):
        if written < len(chunk):
            return [memoryview(chunk)[written:], *chunks[index + 1 :]] if written else chunks[index:]
        written -= len(chunk)
    return []


def writev_all(fd: int, chunks: list[Chunk]) -> None:
    """Write every chunk in order, IOV_MAX at a time, finishing short writes (a signal, a pipe
    that filled up) chunk by chunk."""
    for start in range(0, len(chunks), IOV_MAX):
        batch = chunks[start : start + IOV_MAX]
        written = os.writev(fd, batch)
        for chunk in batch:
            written -= len(chunk)
            if written < 0:
                _write_all(fd, memoryview(chunk)[len(chunk) + written :])
                written = 0


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class RotatingFile:
    """Appends to a file, rotating by size to path.1 .. path.N on line boundaries (we write whole lines)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the program's lifetime
        self._size = self._file.tell()

    def __repr__(self) -> str:
        return f"<RotatingFile {self.path}: {self._size} bytes>"

    def write_chunks(self, chunks: list[Chunk]) -> None:
        """LineSink's write function: the chunks it queued are whole lines together. When they fit
        in the current file they go to it with writev, uncopied; else joined and split by write()."""
        total = sum(len(chunk) for chunk in chunks)
        if self.max_bytes and self._size + total > self.max_bytes:
            self.write(b"".join(chunks))
            return
        writev_all(self._file.fileno(), chunks)  # the buffered file is always flushed: no reorder
        self._size += total

    def write(self, data: bytes) -> None:
        """Append whole lines, rotating between lines so that no file grows past max_bytes.

        The sink hands over everything pending at once (up to its 1 MiB limit), so one write can
        hold many files' worth of lines: it is split here, never mid-line.
        """
        while data:
            head, data = self._fitting(data)
            if not head:
                self._rotate()
                continue
            self._file.write(head)
            self._size += len(head)
        self._file.flush()

    def _fitting(self, data: bytes) -> tuple[bytes, bytes]:
        """The leading whole lines of `data` that fit in the current file, and the rest. An empty
        file takes at least one line however long, so every write makes progress."""
        if not self.max_bytes or self._size + len(data) <= self.max_bytes:
            return data, b""
        room = self.max_bytes - self._size  # < 0 when we appended to a file already too big
        cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
        if cut == 0 and self._size == 0:
            cut = data.find(b"\n") + 1 or len(data)
        return data[:cut], data[cut:]

    def reopen(self) -> None:
        """For logrotate (SIGUSR1): start writing to a fresh file at the same path. Call it on the
        sink's writer thread (LineSink.call_in_writer). The new file is opened before the old one
        is closed: when it cannot be opened, writing goes on to the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = open(self.path, "ab")  # noqa: SIM115
        old, self._file = self._file, fresh
        old.close()
        self._size = self._file.tell()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._file.close()


class Framer:
    """Turns a byte stream into prefixed whole lines (text) or JSON lines (json log format); or,
    unprefixed, into the whole lines as written (a file of the program's own)."""

    def __init__(self, process: str, stream: str, json_lines: bool, *, prefixed: bool = True) -> None:
        self.process = process
        self.stream = stream
        self.json_lines = json_lines and prefixed  # unprefixed: the program's own lines, as written
        self._prefix = f"{process} | ".encode() if prefixed else b""
        self._newline_prefix = b"\n" + self._prefix
        self._partial = b""

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self.feed_parts(chunk))

    def feed_parts(self, chunk: bytes) -> list[bytes | memoryview]:
        """The complete lines of `chunk` (with what was pending), framed, as pieces to write in order.

        Text framing is the hot path of the relay: one bytes.replace per chunk puts the prefix
        after every newline, and the pieces are views, so a chunk is copied twice in all (the
        replace, then the sink's buffer) instead of once per slice and concatenation.
        """
        if self.json_lines:
            return self._json_parts(chunk)
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            return self._no_newline(chunk)
        parts: list[bytes | memoryview]
        if self._prefix:
            replaced = chunk.replace(b"\n", self._newline_prefix)
            end = len(replaced) - (len(chunk) - cut) - len(self._prefix)  # up to the last newline
            parts = [self._prefix, self._partial, memoryview(replaced)[:end]]
        else:  # whole lines, uncopied; the end of a line waits for its newline
            parts = [self._partial, memoryview(chunk)[:cut]]
        self._partial = chunk[cut:]
        return parts

    def flush(self) -> bytes:
        """At EOF: the last line, even without its newline."""
        rest, self._partial = self._partial, b""
        if not rest:
            return b""
        return b"".join(self._json_parts(rest + b"\n") if self.json_lines else (self._prefix, rest, b"\n"))

    def _no_newline(self, chunk: bytes) -> list[bytes | memoryview]:
        data = self._partial + chunk
        if len(data) < MAX_LINE:
            self._partial = data
            return []
        self._partial = b""  # an endless line: cut it so memory stays bounded
        return [self._prefix, data, b"\n"]

    def _json_parts(self, chunk: bytes) -> list[bytes | memoryview]:
        data = self._partial + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < MAX_LINE:
            self._partial = data
            return []
        if cut == 0:
            data, cut = data + b"\n", len(data) + 1
        self._partial = data[cut:]
        now = time.time()
        out = []
        for line in data[: cut - 1].split(b"\n"):
            record = {"ts": now, "process": self.process, "stream": self.stream}
            record["line"] = line.decode("utf-8", "replace")
            out.append(json.dumps(record, ensure_ascii=False))
        return [("\n".join(out) + "\n").encode()]


class PipeRelay(asyncio.Protocol):
    """Reads one child pipe, frames lines into a sink; pauses the pipe while the sink is full."""

    def __init__(
        self,
        framer: Framer,
        sink: LineSink | None,
        on_line: Callable[[str], bool] | None = None,
        tail: OutputTail | None = None,
    ) -> None:
        self.framer = framer
        self.sink = sink
        self.on_line = on_line  # readiness by line: called for each line until it returns True
        self._unmatched = b""  # the start of a line not yet complete, for on_line
        self.tail = tail  # recent output for `asyncsup ctl tail`: raw chunks, before framing
        self.closed = asyncio.get_running_loop().create_future()
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "closed" if self.closed.done() else "open"
        return f"<PipeRelay {self.framer.process} {self.framer.stream}: {state}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.ReadTransport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.on_line is not None:
            self._match_lines(data)
        if self.tail is not None:
            self.tail.feed(data)
        if self.sink is not None and not self.sink.write(*self.framer.feed_parts(data)):
            self._pause()

    def eof_received(self) -> bool:
        tail = self.framer.flush()
        if tail and self.sink is not None:
            self.sink.write(tail)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def drained(self) -> bool:
        """Everything written so far has been relayed: the pipe is closed, or empty and read.

        After an exit we cannot wait for EOF: a daemon that left the group may hold the pipe
        open for ever. An empty kernel buffer says the writer's last words reached the sink.
        """
        if self.closed.done() or self._transport is None:
            return True
        if self._paused:
            return False
        pipe = self._transport.get_extra_info("pipe")
        try:
            pending = array.array("i", [0])
            fcntl.ioctl(pipe.fileno(), termios.FIONREAD, pending)
        except (OSError, AttributeError, ValueError):
            return True
        return pending[0] == 0

    def _match_lines(self, data: bytes) -> None:
        """Lines for on_line are joined across reads (a read may end mid-line); the unfinished
        last line is offered too, so a prompt-like "ready" without a newline still matches."""
        assert self.on_line is not None
        *lines, self._unmatched = (self._unmatched + data).split(b"\n")
        self._unmatched = self._unmatched[-MAX_LINE:]
        for line in [*lines, self._unmatched] if self._unmatched else lines:
            if self.on_line(line.decode("utf-8", "replace")):
                self.on_line, self._unmatched = None, b""  # matched: stop paying for it
                return

    def _pause(self) -> None:
        assert self._transport is not None and self.sink is not None
        self._transport.pause_reading()
        self._paused = True
        loop = asyncio.get_running_loop()
        self.sink.when_space(lambda: _discard(loop.call_soon_threadsafe(self._resume)))

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()


def _discard(_: object) -> None:
    pass


def make_pipe() -> tuple[int, int]:
    """A close-on-exec pipe with a large buffer: (read end, write end)."""
    r, w = os.pipe()
    with contextlib.suppress(OSError):  # the limit may be lower for non-root; the default still works
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


async def connect_relay(read_fd: int, relay: PipeRelay) -> None:
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: relay, os.fdopen(read_fd, "rb", buffering=0))


def line_matcher(pattern: re.Pattern[str], on_match: Callable[[], None]) -> Callable[[str], bool]:
    def check(line: str) -> bool:
        if pattern.search(line):
            on_match()
            return True
        return False

    return check
