"""The README's promise: `asyncsup run sample.toml` shows programs and messages at work, and stops cleanly.

Runs the real sample.toml (copied, so its var/queue.db lands in tmp_path) on both loops:
1. programs start and their output is prefixed; the producer sends, the consumer handles;
2. a message that does not fit its type lands in the failure queue with the reason;
3. `asyncsup ctl status` and `asyncsup stats` answer while it runs;
4. SIGINT drains and asyncsup exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    config = str(tmp_path / "asyncsup.toml")
    return subprocess.run(
        [sys.executable, "-m", "asyncsup", command, "-c", config, *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_sample_runs_programs_and_consumers_and_stops_cleanly(
    supervise: Harness, loop_kind: str, tmp_path: Path
) -> None:
    run = supervise((ROOT / "sample.toml").read_text(), loop=loop_kind)
    run.wait_line(r"^worker:1 \| worker 1 up$", "stdout")
    run.wait_line(r"^clock \| tick ", "stdout")
    run.wait_line(r"asyncsup.demo: resized image \d+", "stderr", timeout=30)
    run.wait_line(r"failed, sent to failed: body does not fit ResizeImage", "stderr", timeout=30)

    status = _cli(tmp_path, "ctl", "status")
    assert status.returncode == 0, status.stderr
    assert "producer" in status.stdout and "RUNNING" in status.stdout
    stats = _cli(tmp_path, "stats")
    assert stats.returncode == 0, stats.stderr
    assert "failed" in stats.stdout

    run.signal(signal.SIGINT)
    assert run.wait_exit() == 0
    assert run.matching(r"consumer images stopped", "stderr")
    assert not run.matching(r"Traceback|KeyboardInterrupt")
