"""Prints `ready`, then `got SIGXXX` for each signal it receives (never SIGCHLD), flushed.

SIGTERM and SIGINT end it (exit 0) unless `--ignore-term` is given; other signals only print.
"""

import os
import signal
import sys

IGNORE_TERM = "--ignore-term" in sys.argv


def on_signal(signum: int, frame: object) -> None:
    # One write per line: print() writes text and newline apart, and another handler can run
    # in between (when a write is interrupted), gluing two lines together.
    os.write(1, f"got {signal.Signals(signum).name}\n".encode())
    if signum in (signal.SIGTERM, signal.SIGINT) and not IGNORE_TERM:
        sys.exit(0)


for sig in signal.Signals:
    if sig < 32 and sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        signal.signal(sig, on_signal)
print("ready", flush=True)
while True:
    signal.pause()
