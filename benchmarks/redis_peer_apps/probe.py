"""What every benchmarked worker calls once per message, and how it tells the harness.

Stdlib only: it is imported by asyncsup's handler module and by each peer's task module, each in
its own venv. The harness passes its settings in the environment:

- ``BENCH_REPORT``: a unix datagram socket; every report is one JSON datagram (never split).
- ``BENCH_EXPECT``: this process reports as soon as it has handled that many messages (one worker
  process: the last message done).
- ``BENCH_LAST``: the sequence number of the last message enqueued; the process that handles it
  reports at once (several processes: the harness then waits for the others to drain).
- ``BENCH_BARRIER``: a file the harness holds an exclusive lock on. The first message blocks the
  whole process (on purpose: its event loop or thread) until the harness lets go, so that N
  processes that booted at different times start consuming together.

Per message the probe costs one ``next()`` on a counter and one clock read; CPU time is read only
at the first message and when reporting.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import json
import os
import resource
import socket
import time
from collections.abc import Callable


class Probe:
    def __init__(self) -> None:
        env = os.environ
        self._address = env.get("BENCH_REPORT", "")
        self._expect = int(env.get("BENCH_EXPECT", "0"))
        self._last_seq = int(env.get("BENCH_LAST", "-1"))
        self._barrier = env.get("BENCH_BARRIER", "")
        self._counter = itertools.count(1)  # next() is atomic under the GIL: dramatiq has 8 threads
        self.handled = 0
        self.first = self.last = self.cpu_first = 0.0
        if self._address:
            atexit.register(self.report, "exit")

    def __repr__(self) -> str:
        return f"<Probe handled {self.handled} messages, reporting to {self._address or 'nobody'}>"

    def done(self, seq: int) -> None:
        """One message's (no-op) work is done."""
        now = time.perf_counter()
        handled = next(self._counter)
        if handled == 1:
            now = self._start()
        self.handled, self.last = handled, now  # at exit: the last values (threads may race here)
        if handled == self._expect or seq == self._last_seq:
            self.report("expected" if handled == self._expect else "last-seq", handled, now)

    def _start(self) -> float:
        if self._barrier:
            self._send({"event": "ready", "pid": os.getpid()})
            with open(self._barrier, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)  # blocks until the harness releases its LOCK_EX
        self.cpu_first = time.process_time()
        self.first = time.perf_counter()
        return self.first

    def report(self, event: str, handled: int | None = None, last: float | None = None) -> None:
        """Tell the harness; ``handled`` and ``last`` default to the latest values (at exit)."""
        handled = self.handled if handled is None else handled
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._send({
            "event": event,
            "pid": os.getpid(),
            "handled": handled,
            "first": self.first,
            "last": self.last if last is None else last,
            "cpu_s": time.process_time() - self.cpu_first if handled else 0.0,
            "maxrss_mb": usage.ru_maxrss / 1024,
        })  # fmt: skip

    def _send(self, payload: dict[str, object]) -> None:
        if not self._address:
            return
        # OSError: the harness is gone (Ctrl-C), nobody to tell.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(json.dumps(payload).encode(), self._address)


PROBE = Probe()


def enqueue_main(enqueue: Callable[[int], float]) -> None:
    """``python <app>.py enqueue N``: print ``enqueue(n)`` (its seconds) as one JSON line.

    Each app times its own sending, after its imports and the start of its event loop: what is
    timed is what a running producer pays per message.
    """
    import sys

    print(json.dumps({"enqueue_s": enqueue(int(sys.argv[2]))}), flush=True)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __repr__(self) -> str:
        return f"<Stopwatch running for {self.seconds():.3f} s>"

    def seconds(self) -> float:
        return time.perf_counter() - self.started
