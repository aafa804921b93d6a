"""A consumer in its own OS process, for the SQLite tests that need several processes or a kill -9.

    python sqlite_child.py consume URL BATCH LEASE
        Receive up to BATCH at a time (leased for LEASE seconds) and ack them; after each ack
        returns, print the batch's bodies (one line per batch, space-separated). A b"stop"
        message ends it: it acks one stop, gives any other stop back to the other consumers,
        and exits 0.
    python sqlite_child.py hold URL COUNT ACKS
        Receive COUNT messages (lease 0.5 s), ack the first ACKS, print "acked ..." and
        "holding ...", then wait forever, to be killed.
"""

from __future__ import annotations

import sys

import anyio

from asyncsup.transports.base import Delivery, open_transport


def say(*words: str) -> None:
    print(*words, flush=True)


async def consume(url: str, batch: int, lease: float) -> None:
    transport = open_transport(url)
    try:
        while True:
            got = await transport.receive(batch, lease=lease, wait=5.0)
            work = [d for d in got if d.data != b"stop"]
            stops = [d for d in got if d.data == b"stop"]
            await transport.ack(work + stops[:1])
            if work:
                say(*(d.data.decode() for d in work))
            if stops:
                await transport.release(stops[1:])
                return
    finally:
        await transport.close()


async def hold(url: str, count: int, acks: int) -> None:
    transport = open_transport(url)
    got: list[Delivery] = []
    while len(got) < count:
        got += await transport.receive(count - len(got), lease=0.5, wait=10.0)
    await transport.ack(got[:acks])
    say("acked", *(d.data.decode() for d in got[:acks]))
    say("holding", *(d.data.decode() for d in got[acks:]))
    await anyio.sleep_forever()


def main(argv: list[str]) -> None:
    mode, url, *numbers = argv
    if mode == "consume":
        anyio.run(consume, url, int(numbers[0]), float(numbers[1]))
    elif mode == "hold":
        anyio.run(hold, url, int(numbers[0]), int(numbers[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
