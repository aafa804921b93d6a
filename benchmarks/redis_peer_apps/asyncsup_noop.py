"""asyncsup's side: a no-op handler for ``asyncsup consume --handlers asyncsup_noop``, and the sender.

The body is a dataclass, so the consumer does its full work per message: envelope decode, registry
lookup, body decoded and validated into ``Noop``, handler call, batched ack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from probe import PROBE, Stopwatch, enqueue_main

from asyncsup import handler


@dataclass
class Noop:
    n: int


@handler("bench.Noop")
async def noop(message: Noop) -> None:
    PROBE.done(message.n)


def transport_url() -> str:
    return f"{os.environ['BENCH_REDIS_URL']}?stream={os.environ['BENCH_STREAM']}&group=bench"


def enqueue(n: int) -> float:
    """``asyncsup.send_batch``: what an application's producer would call (500 per round trip)."""
    import anyio

    from asyncsup import send_batch

    async def main() -> float:
        watch = Stopwatch()  # connecting is timed too: send_batch() opens its own connection
        await send_batch(transport_url(), (Noop(i) for i in range(n)), type="bench.Noop")
        return watch.seconds()

    return anyio.run(main, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    enqueue_main(enqueue)
