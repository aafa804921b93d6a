"""Queue depths in `ctl status` for every transport a consumer names: also those of a consumer that
runs as `processes = N` children (asyncsup opens the transport itself to count), and failure queues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from test_stop_workers import asyncsup

if TYPE_CHECKING:
    from conftest import Harness

HANDLERS = """
import sys

import anyio

from asyncsup import handler


@handler("Hang")
async def hang(body: dict) -> None:
    print("started", body["n"], flush=True)
    await anyio.sleep_forever()
"""

CONFIG = """
[asyncsup]
shutdown_timeout = "2s"

[transports]
jobs = "sqlite:///queue.db?queue=jobs"
failed = "sqlite:///queue.db?queue=failed"

[consumers.workers]
transports = ["jobs"]
handlers = ["depth_handlers"]
concurrency = 1
prefetch = 1
processes = 1
failure_transport = "failed"
"""


def queues(config: Path) -> dict[str, Any]:
    result = asyncsup("ctl", "-c", str(config), "--json", "status")
    assert result.returncode in (0, 3), result.stderr
    found: dict[str, Any] = json.loads(result.stdout)["statistics"].get("queue", {})
    return found


def send(config: Path, kind: str, *bodies: dict[str, int]) -> None:
    lines = "".join(json.dumps(b) + "\n" for b in bodies)
    sent = asyncsup("send", "jobs", kind, "-", "-c", str(config), cwd=config.parent, stdin=lines)
    assert sent.returncode == 0, sent.stderr


def test_depths_of_a_child_process_consumer_and_its_failure_queue(supervise: Harness) -> None:
    """1. A message of a type no handler takes goes to `failed`: failed shows ready 1.
    2. 5 slow messages for one worker with prefetch 1: jobs shows 2 in flight and 3 ready."""
    (supervise.tmp_path / "depth_handlers.py").write_text(HANDLERS)
    run = supervise(CONFIG)
    config = supervise.tmp_path / "asyncsup.toml"
    run.wait_line(r"consumer-workers: STARTING -> RUNNING", "stderr")

    send(config, "Unknown", {"n": 0})
    supervise.wait_until(lambda: queues(config).get("failed", {}).get("ready") == 1, "failed counted")
    send(config, "Hang", *({"n": n} for n in range(5)))
    run.wait_line(r"started 0$", "stdout")
    expected = {"ready": 3, "in_flight": 2, "delayed": 0}
    supervise.wait_until(lambda: queues(config).get("jobs") == expected, "jobs counted")
    assert queues(config)["failed"] == {"ready": 1, "in_flight": 0, "delayed": 0}
    run.stop()
