"""Run benchmarked worker processes: enqueue, launch, hear their probe reports, stop them.

Workers report through ``redis_peer_apps/probe.py`` to a unix datagram socket of ours, so the
harness blocks on a socket (no polling, no CPU taken from the workers) until the last message is
done. Every worker runs in its own session, so stopping it reaches the processes it forked
(dramatiq's and taskiq's worker processes); every wait is bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "redis_peer_apps"


class RunFailed(Exception):
    """One case of one run could not be measured; the message says why."""


@dataclass
class Report:
    """What a worker process's probe told us (see probe.py)."""

    event: str
    pid: int
    handled: int = 0
    first: float = 0.0
    last: float = 0.0
    cpu_s: float = 0.0
    maxrss_mb: float = 0.0


class Inbox:
    """The datagram socket the probes write to."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "reports.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)

    def __repr__(self) -> str:
        return f"<Inbox listening on {self.path}>"

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> None:
        """Drop reports left over from an earlier case (an enqueue process, a late exit)."""
        self._sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self._sock.recv(65536)
        self._sock.setblocking(True)

    def wait(
        self, what: str, accept: Callable[[Report], bool], timeout: float, workers: Sequence[Worker] = ()
    ) -> Report:
        """The first report that ``accept`` takes, within ``timeout`` seconds.

        Between reports, once a second, checks that the workers still run: one that died at start
        (an import error, a refused option) fails the case at once rather than at the timeout.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(min(left, 1.0))
            try:
                report = Report(**json.loads(self._sock.recv(65536)))
            except TimeoutError:
                for worker in workers:
                    if why := worker.exited():
                        raise RunFailed(f"worker {why}") from None
                continue
            if accept(report):
                return report
        raise RunFailed(f"no {what} within {timeout:.0f} s")


@dataclass
class Worker:
    """One launched worker command (its own session) and its log file."""

    argv: Sequence[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    stop_outcome: str = "not stopped"
    stop_s: float = float("nan")
    _term_sent: float = 0.0

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else f"pid {self.proc.pid}, {self.stop_outcome}"
        return f"<Worker {' '.join(self.argv[:3])}: {state}>"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=APPS, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def exited(self) -> str | None:
        """None while running, else why it is not running (with its log's tail)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"exited with code {self.proc.returncode}: {self.log_tail()}"

    def log_tail(self, size: int = 600) -> str:
        text = self.log.read_bytes()[-size:].decode(errors="replace").strip()
        return " | ".join(text.splitlines()[-6:])

    def tree_peak_rss_mb(self) -> float:
        """Peak RSS (VmHWM) summed over the launched process and all its descendants, now."""
        if self.proc is None:
            return float("nan")
        pids, stack = [], [self.proc.pid]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(_children(pid))
        return sum(_vm_hwm_mb(pid) for pid in pids)

    def terminate(self) -> None:
        """SIGTERM the session (as ``docker stop`` would); ``wait_stopped`` then records the outcome."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            self.stop_outcome = f"had exited ({self.proc.returncode}) before SIGTERM"
            return
        self._term_sent = time.perf_counter()
        _signal_group(self.proc.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the exit after SIGTERM, then SIGKILL the whole session."""
        if self.proc is None or not self._term_sent:
            self.kill()
            return
        try:
            code = self.proc.wait(timeout)
            self.stop_s = time.perf_counter() - self._term_sent
            self.stop_outcome = f"exit {code} after SIGTERM"
        except subprocess.TimeoutExpired:
            self.stop_outcome = f"killed: still running {timeout:.0f} s after SIGTERM"
        self.kill()  # the session's other processes too, whatever the leader did

    def stop(self, timeout: float) -> None:
        self.terminate()
        self.wait_stopped(timeout)

    def kill(self) -> None:
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _signal_group(pgid: int, signo: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signo)


def _read(path: str) -> str:
    """A /proc file's text, or "" when the process is already gone."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _children(pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (threads may fork too)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    return [int(c) for tid in tids for c in _read(f"/proc/{pid}/task/{tid}/children").split()]


def _vm_hwm_mb(pid: int) -> float:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Barrier:
    """An exclusive lock the probes' first message waits on (shared lock) until we release it."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "barrier.lock")
        self._file = open(self.path, "wb")  # noqa: SIM115 (held until release())
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __repr__(self) -> str:
        return f"<Barrier {'held' if not self._file.closed else 'released'} on {self.path}>"

    def release(self) -> None:
        self._file.close()


def enqueue(python: str, app: str, n: int, env: dict[str, str], timeout: float) -> float:
    """Run ``<app>.py enqueue n`` in its venv; returns its own timing of the enqueue, in seconds."""
    argv = [python, str(APPS / f"{app}.py"), "enqueue", str(n)]
    try:
        done = subprocess.run(argv, env=env, cwd=APPS, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"enqueue of {n} messages took over {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        raise RunFailed(f"enqueue failed (exit {done.returncode}): {tail}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["enqueue_s"])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(APPS)  # the app modules and probe.py; asyncsup is installed in .venv
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
