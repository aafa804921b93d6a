"""Consumers that run as `processes = N` children, seen from the `asyncsup run` above them: their
queue depths (asyncsup opens the transports itself to count), their failure queues, and the
counters each child reports, added up per consumer and kept across the children's restarts."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from test_stop_workers import asyncsup

if TYPE_CHECKING:
    from conftest import Harness

HANDLERS = """
import sys

import anyio

from asyncsup import handler


@handler("Fast")
async def fast(body: dict) -> None:
    pass


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


def status(config: Path) -> dict[str, Any]:
    result = asyncsup("ctl", "-c", str(config), "--json", "status")
    assert result.returncode in (0, 3), result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def queues(config: Path) -> dict[str, Any]:
    found: dict[str, Any] = status(config)["statistics"].get("queue", {})
    return found


def handled(config: Path) -> int:
    consumer = status(config)["statistics"].get("consumer", {}).get("workers", {})
    return int(consumer.get("handled", -1))


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


def test_children_report_their_counters_and_a_restart_does_not_reset_them(supervise: Harness) -> None:
    """Two children handle 10 messages: the consumer shows handled 10 in ctl status and /metrics.
    One child is killed -9 and replaced; after 5 more, it shows 15 and 1 restart."""
    (supervise.tmp_path / "depth_handlers.py").write_text(HANDLERS)
    config_text = CONFIG.replace("processes = 1", "processes = 2")
    run = supervise(config_text + '[http]\nlisten = "127.0.0.1:0"\n')
    config = supervise.tmp_path / "asyncsup.toml"
    port = int(run.wait_line(r"http: serving .* on http://127\.0\.0\.1:(\d+)", "stderr")[1])
    run.wait_line(r"consumer-workers:1: STARTING -> RUNNING", "stderr")

    send(config, "Fast", *({"n": n} for n in range(10)))
    supervise.wait_until(lambda: handled(config) == 10, "10 handled, as reported by the children")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20).read().decode()
    assert 'asyncsup_consumer_messages_handled_total{consumer="workers"} 10' in metrics.splitlines()

    victim = next(p for p in status(config)["processes"] if p["name"] == "consumer-workers:0")
    os.kill(victim["pid"], signal.SIGKILL)
    run.wait_line(r"consumer-workers:0: .*-> RUNNING", "stderr", count=2)
    send(config, "Fast", *({"n": n} for n in range(10, 15)))
    supervise.wait_until(lambda: handled(config) == 15, "15 handled, the killed child's counted")
    restarts = lambda: status(config)["statistics"]["consumer"]["workers"]["restarts"]  # noqa: E731
    supervise.wait_until(lambda: restarts() == 1, "the new child reported: 1 restart")
    assert handled(config) == 15  # the killed child's last counters were carried over, not lost
    assert run.stop() == 0
