"""LineSink: chunks queued by reference, written with writev, or at once with RWF_NOWAIT when a
pipe has room; in order, whole, whatever the reader's pace (real pipes, a real writer thread)."""

from __future__ import annotations

import fcntl
import os
import threading

from asyncsup.supervisor.output import F_SETPIPE_SZ, LineSink, _unwritten, fd_writer, nowait_writer


def read_all(fd: int, into: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := os.read(fd, 1000):  # a slow reader: small reads
            into.extend(chunk)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_unwritten_keeps_the_rest_of_a_cut_chunk_and_the_chunks_after_it() -> None:
    chunks: list[bytes | memoryview] = [b"abc", b"de", b"fgh"]
    assert _unwritten(chunks, 0) == chunks
    assert [bytes(c) for c in _unwritten(chunks, 4)] == [b"e", b"fgh"]
    assert _unwritten(chunks, 5) == [b"fgh"]
    assert _unwritten(chunks, 8) == []


def test_lines_through_a_small_pipe_arrive_whole_and_in_order_with_and_without_nowait() -> None:
    """Given a 4 KiB pipe and a slow reader, when 20,000 numbered lines are written in pieces,
    then every line arrives once, whole, in order (the fast path hands over to the thread)."""
    for with_nowait in (True, False):
        r, w = os.pipe()
        fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
        received = bytearray()
        reader = read_all(r, received)
        try_write = nowait_writer(w) if with_nowait else None
        sink = LineSink("test", fd_writer(w), limit=64 * 1024, try_write=try_write)
        for n in range(20_000):
            sink.write(b"line ", f"{n:05d}".encode(), b" " + b"x" * 40 + b"\n")
        sink.close(timeout=30)
        os.close(w)
        reader.join(30)
        os.close(r)
        lines = bytes(received).split(b"\n")
        assert lines[-1] == b""
        assert lines[:-1] == [b"line %05d " % n + b"x" * 40 for n in range(20_000)]


def test_more_chunks_than_writev_takes_at_once_are_all_written() -> None:
    r, w = os.pipe()
    received = bytearray()
    reader = read_all(r, received)
    fd_writer(w)([b"%d\n" % n for n in range(3000)])  # > IOV_MAX (1024) buffers
    os.close(w)
    reader.join(30)
    os.close(r)
    assert bytes(received) == b"".join(b"%d\n" % n for n in range(3000))


def test_a_file_descriptor_without_nowait_support_turns_the_fast_path_off() -> None:
    with open(os.devnull, "wb") as devnull:
        try_write = nowait_writer(devnull.fileno())
        assert try_write is None or try_write([b"x\n"]) in (None, [])
