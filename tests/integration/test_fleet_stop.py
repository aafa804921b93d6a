"""`asyncsup stop-workers`: the fleet-wide deploy over Redis, driven as an operator drives it.

Every consumer here reads one stream of the real Redis under a prefix of its own (so no other
test's consumers see the mark). The handler records each message it finishes in a SQLite file,
with the VERSION of its code and its pid; the tests count the rows: none lost, none handled twice.
Nothing is timed: the tests wait on the processes' output lines and exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import job_handlers
import pytest
from test_consume_cli import Proc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "transports"))
import redis_rig  # noqa: E402

if TYPE_CHECKING:
    from conftest import Harness

WAIT = 30.0
NOT_REDIS = "stop-workers needs a Redis transport; for one host use `asyncsup ctl stop-workers`"
SET = r"restart mark set on redis://127\.0\.0\.1:\d+/0 \(key .*:restart\) at [-\d: .]+ UTC"

CONFIG = """
[asyncsup]
shutdown_timeout = "20s"

[transports]
jobs = "{url}"

[consumers.main]
transports = ["jobs"]
handlers = ["fleet_handlers"]
concurrency = 2
lease = "10s"
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_rig.own_prefix() as name:
        yield name


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.close()


def app(folder: Path, prefix: str, base: str = redis_rig.REDIS_URL, **options: str) -> Path:
    """Handlers (VERSION 1) and a config whose one transport is a stream under `prefix`."""
    write_handlers(folder, 1)
    url = redis_rig.url(f"{prefix}jobs", base, prefix=f"{prefix}mark", **options)
    config = folder / "app.toml"
    config.write_text(CONFIG.format(url=url))
    return config


def write_handlers(folder: Path, version: int) -> None:
    job_handlers.write(folder, "fleet_handlers", version)


def asyncsup(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asyncsup", *args], input=stdin, capture_output=True,
                          text=True, timeout=WAIT, env=env, cwd=cwd)  # fmt: skip


def send(cwd: Path, first: int, count: int, sleep: float) -> None:
    jobs = "".join(json.dumps({"n": n, "sleep": sleep}) + "\n" for n in range(first, first + count))
    sent = asyncsup(cwd, "send", "jobs", "Job", "-", "-c", "app.toml", stdin=jobs)
    assert sent.returncode == 0, sent.stderr


def consume(procs: list[Proc], cwd: Path, *args: str) -> Proc:
    proc = Proc(["consume", "-c", "app.toml", *args], cwd)
    procs.append(proc)
    return proc


def stop_workers(cwd: Path, *args: str) -> str:
    """Run `asyncsup stop-workers`; its one line of output."""
    done = asyncsup(cwd, "stop-workers", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


handled = job_handlers.handled


def logged(proc: Proc, text: str) -> bool:
    return any(text in line for line in proc.err)


def lines_of(proc: Proc, word: str) -> set[str]:
    return {line.split()[-1] for line in proc.out if line.split()[1] == word}


def test_two_consumers_drain_and_exit_and_a_later_one_keeps_its_baseline(
    tmp_path: Path, prefix: str, procs: list[Proc]
) -> None:
    """1. 60 slow messages, two `asyncsup consume` with 2 workers each. 2. Once both are handling
    messages, `asyncsup stop-workers`: both finish what they started, give back what they had
    prefetched, and exit 0. 3. A third consumer, started after the mark, reads it as its baseline,
    looks at it again and goes on: it handles the rest. 4. Every message exactly once."""
    total = 60
    app(tmp_path, prefix)
    send(tmp_path, 0, total, sleep=0.6)  # 9 s of work for 4 workers: much more than the mark takes
    first, second = consume(procs, tmp_path), consume(procs, tmp_path)
    for proc in (first, second):
        proc.wait_for("started a message", lambda p=proc: any("started" in line for line in p.out))  # type: ignore[misc]
        proc.wait_for("read the mark", lambda p=proc: logged(p, "watching the restart mark"))  # type: ignore[misc]

    said = stop_workers(tmp_path, "--transport", "jobs", "-c", "app.toml")
    assert said.endswith("; consumers restart after their current message (within 3s)")
    assert re.fullmatch(SET + ".*", said), said
    for proc in (first, second):
        assert proc.wait_exit() == 0, proc.stderr()
        log = proc.stderr()
        assert "consumer main: stop-workers: restart mark set on" in log and "draining" in log, log
        assert "Traceback" not in log
        assert lines_of(proc, "started") == lines_of(proc, "done")  # in flight: finished, not cut
    assert len(handled(tmp_path)) < total  # they stopped before the queue was empty

    third = consume(procs, tmp_path, "--concurrency", "16", "-v")
    third.wait_for("read the baseline", lambda: logged(third, "last set at"))
    third.wait_for("looked again", lambda: logged(third, "no newer restart mark"))
    third.wait_for("handled the rest", lambda: len(handled(tmp_path)) == total)
    assert third.proc.poll() is None, third.stderr()
    third.proc.send_signal(signal.SIGTERM)
    assert third.wait_exit() == 0, third.stderr()

    rows = handled(tmp_path)
    assert [n for n, _, _ in rows] == list(range(total))  # none lost, none twice
    pids = {pid for _, _, pid in rows}
    assert {first.proc.pid, second.proc.pid} <= pids


def test_an_inline_consumer_restarts_in_process_with_fresh_code(supervise: Harness, prefix: str) -> None:
    """1. `asyncsup run` with an inline consumer on Redis, messages in flight. 2. The handler file
    becomes VERSION = 2 and `asyncsup stop-workers -c FILE` runs (every Redis transport of the
    config). 3. The consumer drains and restarts in-process; asyncsup keeps running, v2 handles
    the rest and a later message. 4. Every message exactly once, all in asyncsup's own pid."""
    total = 20
    folder = supervise.tmp_path
    config = app(folder, prefix).read_text()
    run = supervise(config)
    run.wait_line(r"stop-workers: watching the restart mark on .* \(none set yet\)", "stderr")
    send_to(folder, 0, total)
    run.wait_line(r"^v1 started \d+$", "stdout", count=2)
    write_handlers(folder, 2)

    said = stop_workers(folder, "-c", "asyncsup.toml")
    assert re.fullmatch(SET + ".*", said), said
    run.wait_line(r"stop-workers: consumer main: drained and restarted with fresh code", "stderr")
    send_to(folder, total, 1)
    run.wait_line(rf"^v2 done {total}$", "stdout")
    run.wait_line(r"^v\d done \d+$", "stdout", count=total + 1)
    rows = handled(folder)
    assert [n for n, _, _ in rows] == list(range(total + 1))
    assert {v for _, v, _ in rows} == {1, 2} and {pid for _, _, pid in rows} == {run.pid}
    out = run.texts("stdout")
    first_v2 = next(i for i, line in enumerate(out) if line.startswith("v2 started"))
    assert not [line for line in out[first_v2:] if line.startswith("v1 started")]
    assert run.stop() == 0


def send_to(folder: Path, first: int, count: int) -> None:
    """Like send(), for `asyncsup run`'s config file (asyncsup.toml)."""
    jobs = "".join(json.dumps({"n": n, "sleep": 0.3}) + "\n" for n in range(first, first + count))
    sent = asyncsup(folder, "send", "jobs", "Job", "-", "-c", "asyncsup.toml", stdin=jobs)
    assert sent.returncode == 0, sent.stderr


def test_a_redis_outage_while_polling_is_logged_once_and_the_consumer_goes_on(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """1. A consumer on a private redis-server. 2. The server stops: one warning that the mark
    cannot be read; the consumer keeps running. 3. The server is back: one line saying so.
    4. stop-workers: the consumer exits 0."""
    redis_rig.require_redis()
    if not redis_rig.redis_server_installed():
        pytest.skip("redis-server is not installed")
    server = redis_rig.PrivateRedis(tmp_path)
    server.start()
    try:
        app(tmp_path, "private:", server.url, retry_for="1")
        proc = consume(procs, tmp_path)
        proc.wait_for("read the mark", lambda: logged(proc, "none set yet"))
        server.stop()
        proc.wait_for("said it cannot read", lambda: logged(proc, "cannot read the restart mark"))
        server.start()
        proc.wait_for("read it again", lambda: logged(proc, "can be read again"))
        assert proc.proc.poll() is None, proc.stderr()
        stop_workers(tmp_path, "-c", "app.toml")
        assert proc.wait_exit() == 0, proc.stderr()
        assert sum("cannot read the restart mark" in e for e in proc.err) == 1, proc.stderr()
    finally:
        server.stop()


def test_stop_workers_needs_a_redis_transport(tmp_path: Path) -> None:
    """sqlite:// has no fleet mark: exit 2 with what to use instead; so has a config without Redis."""
    url = "sqlite:///queue.db?queue=jobs"
    refused = asyncsup(tmp_path, "stop-workers", "--transport", url)
    assert refused.returncode == 2 and NOT_REDIS in refused.stderr, refused.stderr
    (tmp_path / "app.toml").write_text(f'[transports]\njobs = "{url}"\n')
    refused = asyncsup(tmp_path, "stop-workers", "-c", "app.toml")
    assert refused.returncode == 2 and NOT_REDIS in refused.stderr, refused.stderr
    assert "app.toml: transports: no Redis transport" in refused.stderr
    nothing = asyncsup(tmp_path, "stop-workers")
    assert nothing.returncode == 2 and "name a Redis transport" in nothing.stderr, nothing.stderr
