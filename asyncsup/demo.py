"""The handlers and the producer that sample.toml runs, so a newcomer sees messages flow.

`python -m asyncsup.demo [CONFIG]` (default: $ASYNCSUP_CONFIG, which asyncsup sets) sends a
ResizeImage to the `high` or `async` transport every half second, and now and then a message that
cannot be handled. The handlers fail at random, so retries show up in the logs, and some messages
end in the failure queue: `asyncsup failed show -c sample.toml` lists them with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
from dataclasses import dataclass

from asyncsup.consumer.handlers import handler
from asyncsup.consumer.send import Sender
from asyncsup.errors import Reject

log = logging.getLogger("asyncsup.demo")


@dataclass
class ResizeImage:
    image_id: int
    width: int = 800


@handler
async def resize(msg: ResizeImage) -> None:
    if msg.image_id % 13 == 0:
        raise Reject(f"image {msg.image_id} is corrupt")  # straight to the failure queue
    await asyncio.sleep(random.uniform(0.05, 0.3))  # the "work"
    if random.random() < 0.2:
        raise ConnectionError("image store timed out")  # retried with backoff
    log.info("resized image %d to %dpx", msg.image_id, msg.width)


@handler("DeleteImage")
def delete(body: dict[str, object]) -> None:  # a sync handler: runs in a worker thread
    log.info("deleted image %s", body.get("image_id"))


async def produce(config: str) -> None:
    async with Sender("high", config=config) as high, Sender("async", config=config) as low:
        for n in range(1, 1_000_000):
            if n % 10 == 0:
                await high.send({"image_id": "ten"}, type="ResizeImage")  # fails validation
            elif n % 4 == 0:
                await high.send({"image_id": n}, type="DeleteImage")
            else:
                await (high if n % 3 else low).send(ResizeImage(image_id=n, width=400 + n % 5 * 100))
            print(f"sent message {n}", flush=True)
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(produce(sys.argv[1] if len(sys.argv) > 1 else os.environ["ASYNCSUP_CONFIG"]))
