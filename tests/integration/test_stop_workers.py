"""`asyncsup ctl stop-workers` (and SIGUSR2): the deploy, driven as an operator drives it.

The handler records every message it finishes in a SQLite file, with the VERSION of its code; the
test changes that version on disk while messages are in flight and counts the rows afterwards:
none lost, none handled twice, the old code finished what it had started and the new code did the
rest. Nothing is timed: the test waits on the handlers' output lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import job_handlers
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conftest import Asyncsup, Harness

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
TOTAL = 24

CONFIG = """
[asyncsup]
shutdown_timeout = "20s"

[transports]
jobs = "sqlite:///queue.db?queue=jobs"

[consumers.main]
transports = ["jobs"]
handlers = ["deploy_handlers"]
concurrency = 4
lease = "5s"

[programs.deployed]
command = ["sleep", "1000"]
numprocs = 2
startsecs = 0
restart_on_deploy = true

[programs.other]
command = ["sleep", "1001"]
startsecs = 0
"""


def asyncsup(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "asyncsup", *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=WAIT * 3, env=env, cwd=cwd
    )


def pids(config: Path) -> dict[str, Any]:
    result = asyncsup("ctl", "-c", str(config), "--json", "status")
    return {p["name"]: p["pid"] for p in json.loads(result.stdout)["processes"]}


def write_handlers(folder: Path, version: int) -> None:
    job_handlers.write(folder, "deploy_handlers", version)


def start(supervise: Harness, extra: str = "") -> tuple[Asyncsup, Path]:
    write_handlers(supervise.tmp_path, 1)
    run = supervise(CONFIG + extra)
    for name in ("deployed:0", "deployed:1", "other"):
        run.wait_line(rf"{re.escape(name)}: STARTING -> RUNNING", "stderr")
    run.wait_line(r"consumer main: consuming jobs", "stderr")
    config = supervise.tmp_path / "asyncsup.toml"
    jobs = "".join(json.dumps({"n": n}) + "\n" for n in range(TOTAL))
    sent = asyncsup("send", "jobs", "Job", "-", "-c", str(config), stdin=jobs, cwd=supervise.tmp_path)
    assert sent.returncode == 0, sent.stderr
    return run, config


def handled(folder: Path) -> list[tuple[int, int]]:
    return [(n, version) for n, version, _ in job_handlers.handled(folder)]


def test_stop_workers_drains_in_flight_messages_and_restarts_with_new_code(supervise: Harness) -> None:
    """1. 24 slow messages, 4 at a time. 2. Once 4 are in flight, the handler file changes to
    VERSION = 2 (same size: a stale .pyc would hide it) and `ctl stop-workers` runs. 3. It answers
    once the consumer restarted and both restart_on_deploy copies restarted, one at a time; `other`
    keeps its pid. 4. Every message handled exactly once; v1 finished what it started, v2 the rest,
    and no v1 handler started after the first v2 one."""
    run, config = start(supervise)
    before = pids(config)
    run.wait_line(r"^v1 started \d+$", "stdout", count=4)
    write_handlers(supervise.tmp_path, 2)

    deploy = asyncsup("ctl", "-c", str(config), "stop-workers")
    assert deploy.returncode == 0, deploy
    assert deploy.stdout.splitlines() == [
        "consumer main: drained and restarted with fresh code",
        "deployed:0 restarted",
        "deployed:1 restarted",
    ]
    after = pids(config)
    assert after["other"] == before["other"]
    assert all(after[f"deployed:{n}"] != before[f"deployed:{n}"] for n in range(2))

    run.wait_line(r"^v\d done \d+$", "stdout", count=TOTAL)
    rows = handled(supervise.tmp_path)
    assert [n for n, _ in rows] == list(range(TOTAL))  # none lost, none twice
    assert {v for _, v in rows} == {1, 2}
    out = run.texts("stdout")
    first_v2 = next(i for i, line in enumerate(out) if line.startswith("v2 started"))
    assert not [line for line in out[first_v2:] if line.startswith("v1 started")]
    started_v1 = {line.split()[-1] for line in out if line.startswith("v1 started")}
    done_v1 = {line.split()[-1] for line in out if line.startswith("v1 done")}
    assert started_v1 == done_v1  # in-flight handlers of the old code finished, not cut
    assert run.stop() == 0


def test_sigusr2_is_stop_workers_and_a_broken_handler_keeps_the_old_code(supervise: Harness) -> None:
    """1. The handler file is broken: `ctl stop-workers` exits 1 with the import error and nothing
    restarts; messages go on with v1. 2. Fixed as v2, SIGUSR2 does the deploy."""
    run, config = start(supervise)
    before = pids(config)
    (supervise.tmp_path / "deploy_handlers.py").write_text("def job(:\n")
    refused = asyncsup("ctl", "-c", str(config), "stop-workers")
    assert refused.returncode == 1 and "the new handler code does not import" in refused.stderr
    assert "SyntaxError" in refused.stderr
    assert pids(config) == before

    write_handlers(supervise.tmp_path, 2)
    run.signal(signal.SIGUSR2)
    run.wait_line(r"SIGUSR2 received: relayed to 0 program\(s\); restarting workers", "stderr")
    run.wait_line(r"stop-workers: deployed:1 restarted", "stderr")
    late = asyncsup(
        "send", "jobs", "Job", json.dumps({"n": TOTAL}), "-c", str(config), cwd=supervise.tmp_path
    )
    assert late.returncode == 0, late.stderr
    run.wait_line(rf"^v2 done {TOTAL}$", "stdout")
    run.wait_line(r"^v\d done \d+$", "stdout", count=TOTAL + 1)
    rows = handled(supervise.tmp_path)
    assert [n for n, _ in rows] == list(range(TOTAL + 1))
    assert run.stop() == 0


def test_consumer_statistics_in_status_and_metrics(supervise: Harness) -> None:
    """After 24 messages: `ctl status` has a consumers section (handled, failed, retried, in-flight)
    and queue depths; /metrics has them as counters and gauges with consumer/queue labels."""
    run, config = start(supervise, '[http]\nlisten = "127.0.0.1:0"\n')
    port = int(run.wait_line(r"http: serving .* on http://127\.0\.0\.1:(\d+)", "stderr")[1])
    run.wait_line(r"^v1 done \d+$", "stdout", count=TOTAL)
    supervise.wait_until(lambda: status_of(config)["consumer"]["main"]["handled"] == TOTAL, "acks flushed")
    stats = status_of(config)
    assert stats["consumer"]["main"] == {
        "handled": TOTAL,
        "failed": 0,
        "retried": 0,
        "released": 0,
        "in_flight": 0,
        "restarts": 0,
    }
    assert stats["queue"]["jobs"] == {"ready": 0, "in_flight": 0, "delayed": 0}
    text = asyncsup("ctl", "-c", str(config), "status").stdout.splitlines()
    assert f"consumer main: handled {TOTAL}, failed 0, retried 0, released 0, in_flight 0, restarts 0" in text
    assert "queue jobs: ready 0, in_flight 0, delayed 0" in text

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT).read().decode()
    lines = metrics.splitlines()
    assert "# TYPE asyncsup_consumer_messages_handled_total counter" in lines
    assert f'asyncsup_consumer_messages_handled_total{{consumer="main"}} {TOTAL}' in lines
    assert 'asyncsup_consumer_messages_failed_total{consumer="main"} 0' in lines
    assert 'asyncsup_consumer_in_flight{consumer="main"} 0' in lines
    assert 'asyncsup_queue_ready{queue="jobs"} 0' in lines
    assert f'asyncsup_transport_messages_handled_total{{consumer="main",transport="jobs"}} {TOTAL}' in lines
    assert "# TYPE asyncsup_consumer_handler_duration_seconds histogram" in lines
    assert f'asyncsup_consumer_handler_duration_seconds_count{{consumer="main"}} {TOTAL}' in lines
    assert f'asyncsup_consumer_handler_duration_seconds_bucket{{consumer="main",le="+Inf"}} {TOTAL}' in lines
    assert "" not in lines
    durations = {f.name: f for f in text_string_to_metric_families(metrics)}[
        "asyncsup_consumer_handler_duration_seconds"
    ]  # the reference parser reads the labelled histogram
    assert [s.value for s in durations.samples if s.name.endswith("_count")] == [TOTAL]
    assert run.stop() == 0


def status_of(config: Path) -> dict[str, Any]:
    result = asyncsup("ctl", "-c", str(config), "--json", "status")
    statistics: dict[str, Any] = json.loads(result.stdout)["statistics"]
    return statistics


def test_update_adds_changes_and_removes_inline_consumers(supervise: Harness) -> None:
    """1. concurrency 4 -> 2 and a new consumer `extra`: main drains and restarts with 2 workers,
    extra starts. 2. A consumer whose handlers do not import: refused, nothing changes. 3. extra
    removed: it drains and stops; the messages are all handled once."""
    run, config = start(supervise)
    more = CONFIG.replace("[transports]\n", '[transports]\nmore = "sqlite:///queue.db?queue=more"\n')
    changed = more.replace("concurrency = 4", "concurrency = 2")
    config.write_text(
        changed + '\n[consumers.extra]\ntransports = ["more"]\nhandlers = ["deploy_handlers"]\n'
    )
    update = asyncsup("ctl", "-c", str(config), "update")
    assert update.returncode == 0, update
    assert update.stdout.splitlines() == [
        "consumer main: changed (concurrency): consumer main: drained and restarted",
        "consumer extra: added: started",
    ]
    run.wait_line(r"consumer main: consuming jobs with 2 worker\(s\)", "stderr")
    run.wait_line(r"consumer extra: consuming more with 16 worker\(s\)", "stderr")

    config.write_text(
        changed + '\n[consumers.broken]\ntransports = ["more"]\nhandlers = ["no_such_module"]\n'
    )
    refused = asyncsup("ctl", "-c", str(config), "update")
    assert refused.returncode == 1 and "consumers.broken.handlers: cannot import" in refused.stderr
    assert "extra" in status_of(config)["consumer"]  # nothing changed

    config.write_text(changed)
    update = asyncsup("ctl", "-c", str(config), "update")
    assert update.stdout.splitlines() == ["consumer extra: removed: drained and stopped"], update
    assert list(status_of(config)["consumer"]) == ["main"]
    run.wait_line(r"^v1 done \d+$", "stdout", count=TOTAL)
    assert [n for n, _ in handled(supervise.tmp_path)] == list(range(TOTAL))
    assert run.stop() == 0
