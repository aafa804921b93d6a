"""`asyncsup send / consume / stats / failed` as real processes on a real SQLite file.

The handlers print the number of each message they handle on stdout; a reader thread collects the
lines and tests wait on them (a condition variable with a deadline, never a sleep loop).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0

HANDLERS = '''
import sys

import anyio

from asyncsup import handler


@handler("Slow")
async def slow(body: dict) -> None:
    await anyio.sleep(body["sleep"])
    sys.stdout.write(f"{body['n']}\\n")
    sys.stdout.flush()


@handler("Hang")
async def hang(body: dict) -> None:
    sys.stdout.write(f"started {body['n']}\\n")
    sys.stdout.flush()
    await anyio.sleep_forever()


@handler("Fast")
async def fast(body: dict) -> None:
    sys.stdout.write(f"{body['n']}\\n")
    sys.stdout.flush()
'''

CONFIG = """
[asyncsup]
shutdown_timeout = "20s"

[transports]
jobs = "sqlite:///queue.db?queue=jobs"
failed = "sqlite:///queue.db?queue=failed"

[consumers.main]
transports = ["jobs"]
handlers = ["cli_handlers"]
concurrency = {concurrency}
lease = "1s"
failure_transport = "failed"
retry = {{ max_retries = 0 }}
"""


class Proc:
    """One asyncsup process; stdout lines (the handlers' output) collected by a thread."""

    def __init__(
        self, argv: Sequence[str], cwd: Path, stdin: bytes | None = None, loop: str = "uvloop"
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ASYNCSUP_LOOP": loop}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncsup", *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._open = 2  # streams still being read
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def _read(self, pipe: object, into: list[str]) -> None:
        for raw in iter(pipe.readline, b""):  # type: ignore[attr-defined]
            with self._cond:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = WAIT) -> None:
        """Until `ready()` (checked on every new line), the output ends, or the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self._open == 0:
                    raise AssertionError(f"never {what}; rc={self.proc.poll()}; stderr:\n{self.stderr()}")
                self._cond.wait(left)

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout}s; stderr:\n{self.stderr()}") from None
        for thread in self._threads:
            thread.join(timeout)
        return rc

    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err[-60:])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WAIT)
        for thread in self._threads:
            thread.join(WAIT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for thread in self._threads:
            thread.join(WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def app(tmp_path: Path) -> Callable[..., Path]:
    def make(concurrency: int = 4) -> Path:
        (tmp_path / "cli_handlers.py").write_text(HANDLERS)
        (tmp_path / "app.toml").write_text(CONFIG.format(concurrency=concurrency))
        return tmp_path

    return make


@pytest.fixture
def procs() -> list[Proc]:
    started: list[Proc] = []
    yield started  # type: ignore[misc]
    for proc in started:
        proc.close()


def run(
    procs: list[Proc], cwd: Path, *argv: str, stdin: bytes | None = None, loop: str = "uvloop"
) -> Proc:
    proc = Proc([*argv, "-c", "app.toml"], cwd, stdin, loop)
    procs.append(proc)
    return proc


def send(procs: list[Proc], cwd: Path, kind: str, bodies: list[dict[str, object]]) -> None:
    lines = "".join(json.dumps(b) + "\n" for b in bodies).encode()
    sender = run(procs, cwd, "send", "jobs", kind, "-", stdin=lines)
    assert sender.wait_exit() == 0, sender.stderr()


def counts(procs: list[Proc], cwd: Path) -> dict[str, dict[str, int]]:
    stats = run(procs, cwd, "stats", "--json")
    assert stats.wait_exit() == 0, stats.stderr()
    return {row["transport"]: row for row in json.loads("\n".join(stats.out))}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_drains_and_every_message_is_handled_exactly_once(
    app: Callable[..., Path], procs: list[Proc], loop: str
) -> None:
    """1. 40 slow messages, 4 at a time. 2. SIGTERM once some are done: exit 0, no traceback,
    in-flight handlers finished. 3. A second consumer handles the rest. 4. Each exactly once."""
    cwd = app(concurrency=4)
    total = 40
    send(procs, cwd, "Slow", [{"n": n, "sleep": 0.2} for n in range(total)])
    first = run(procs, cwd, "consume", "--consumer", "main", loop=loop)
    first.wait_for("handled 8 messages", lambda: len(first.out) >= 8)
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0, first.stderr()
    log = first.stderr()
    assert "Traceback" not in log
    assert "SIGTERM received: draining" in log and "released" in log
    assert f"{len(first.out)} handled" in log  # what it printed is what it acked

    left = counts(procs, cwd)["jobs"]
    assert left["in_flight"] == 0 and left["ready"] == total - len(first.out)
    second = run(procs, cwd, "consume", "--consumer", "main", "--limit", str(left["ready"]), loop=loop)
    assert second.wait_exit() == 0, second.stderr()
    assert "message limit" in second.stderr()

    handled = Counter(int(n) for n in first.out + second.out)
    assert sorted(handled) == list(range(total)) and set(handled.values()) == {1}
    assert counts(procs, cwd)["jobs"] == {**left, "ready": 0, "in_flight": 0, "delayed": 0}


def test_kill_9_three_times_loses_nothing(
    app: Callable[..., Path], procs: list[Proc], capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 messages; the consumer is killed with SIGKILL at random moments 3 times and
    restarted: every message is handled at least once; duplicates are counted and reported."""
    cwd = app(concurrency=16)
    total = 10_000
    send(procs, cwd, "Fast", [{"n": n} for n in range(total)])
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    seen: Counter[int] = Counter()
    for _ in range(3):
        proc = run(procs, cwd, "consume", "--consumer", "main")
        target = rng.randrange(200, 2500)
        proc.wait_for(f"handled {target} messages", lambda p=proc, t=target: len(p.out) >= t)  # type: ignore[misc]
        proc.kill()  # SIGKILL: no drain, no ack flush, leases left behind
        seen.update(int(n) for n in proc.out)

    last = run(procs, cwd, "consume", "--consumer", "main")
    missing = lambda: set(range(total)) - seen.keys() - {int(n) for n in list(last.out)}  # noqa: E731
    last.wait_for("handled every message", lambda: not missing(), timeout=60)
    last.proc.send_signal(signal.SIGTERM)
    assert last.wait_exit() == 0, last.stderr()
    seen.update(int(n) for n in last.out)

    # What is still queued was handled by a killed consumer that never acked it (or was
    # prefetched by the last one when it stopped): one more run must find exactly those.
    left = counts(procs, cwd)["jobs"]
    if left["ready"] + left["in_flight"]:
        rest = run(procs, cwd, "consume", "--consumer", "main", "--limit",
                   str(left["ready"] + left["in_flight"]))  # fmt: skip
        assert rest.wait_exit() == 0, rest.stderr()
        seen.update(int(n) for n in rest.out)
    assert set(seen) == set(range(total))  # none lost
    duplicates = sum(c - 1 for c in seen.values())
    after = counts(procs, cwd)["jobs"]
    assert (after["ready"], after["in_flight"], after["delayed"]) == (0, 0, 0)
    with capsys.disabled():
        print(f"\n[kill -9 x3, seed {seed}] {total} messages handled, {duplicates} duplicates "
              f"(handled, then killed before the ack was committed)")  # fmt: skip


def test_second_sigint_forces_and_the_message_stays_queued(
    app: Callable[..., Path], procs: list[Proc]
) -> None:
    """A handler that never returns: the first SIGINT drains (waits for it), the second forces:
    exit 0, no traceback, and the message was neither acked nor failed."""
    cwd = app()
    send(procs, cwd, "Hang", [{"n": 1}])
    proc = run(procs, cwd, "consume", "--consumer", "main")
    proc.wait_for("started the handler", lambda: "started 1" in proc.out)
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for("logged the drain", lambda: any("SIGINT received: draining" in e for e in proc.err))
    proc.proc.send_signal(signal.SIGINT)
    assert proc.wait_exit() == 0, proc.stderr()
    log = proc.stderr()
    assert "SIGINT received again: stopping now" in log and "cancelling 1 running handler" in log
    assert "Traceback" not in log and "0 handled, 0 failed" in log
    left = counts(procs, cwd)
    assert left["jobs"]["ready"] + left["jobs"]["in_flight"] == 1 and left["failed"]["ready"] == 0


def test_failed_commands_show_retry_and_remove(app: Callable[..., Path], procs: list[Proc]) -> None:
    cwd = app()
    send(procs, cwd, "Unknown", [{"n": 1}, {"n": 2}])
    consume = run(procs, cwd, "consume", "--consumer", "main", "--limit", "2")
    assert consume.wait_exit() == 0, consume.stderr()
    assert counts(procs, cwd)["jobs"]["failed"] == 2

    show = run(procs, cwd, "failed", "show", "--json")
    assert show.wait_exit() == 0
    rows = json.loads("\n".join(show.out))
    assert [r["type"] for r in rows] == ["Unknown", "Unknown"]
    assert "no handler for message type 'Unknown'" in rows[0]["error"] and rows[0]["origin"] == "jobs"

    table = run(procs, cwd, "failed", "show")
    assert table.wait_exit() == 0 and table.out[0].split()[:3] == ["id", "type", "attempts"]

    retry = run(procs, cwd, "failed", "retry", rows[0]["id"])
    assert retry.wait_exit() == 0 and "retried 1 message(s) on jobs" in retry.out
    remove = run(procs, cwd, "failed", "remove", rows[1]["id"])
    assert remove.wait_exit() == 0 and "removed 1 message(s) from failed" in remove.out
    after = counts(procs, cwd)
    assert after["jobs"]["ready"] == 1 and after["failed"]["ready"] == 0

    browse = run(procs, cwd, "failed", "show", "nosuchid")
    assert browse.wait_exit() == 1 and "not in failed: nosuchid" in browse.stderr()


def test_consume_with_bad_handlers_module_fails_fast_with_exit_2(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "app.toml").write_text(textwrap.dedent(CONFIG.format(concurrency=1)).replace(
        '"cli_handlers"', '"no_such_module"'))  # fmt: skip
    proc = run(procs, tmp_path, "consume", "--consumer", "main")
    assert proc.wait_exit() == 2
    assert "consumers.main.handlers: cannot import handler module 'no_such_module'" in proc.stderr()
