"""A harness for black-box tests: `python -m asyncsup run CONFIG` as a real subprocess.

The `supervise` fixture writes a config to tmp_path, starts asyncsup, and returns an `Asyncsup`
handle. Reader threads record every stdout/stderr line with its arrival time; tests wait for a
line matching a regex with a bounded timeout (a condition variable, not a sleep loop). Whatever a
test does, teardown kills asyncsup and every process it started: each run carries a unique token
in its environment, so even double-forked daemons that left the tree are found in /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILDREN = ROOT / "tests" / "children"
PYTHON = sys.executable
TOKEN_VAR = "ASYNCSUP_TEST_TOKEN"
WAIT = 20.0  # generous bound for any single observable event on a noisy 2-core machine


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() when the reader thread got it
    stream: str  # "stdout" or "stderr"
    text: str  # without the newline

    def __str__(self) -> str:
        return f"[{self.stream}] {self.text}"


class Asyncsup:
    """One running asyncsup: its lines, its exit, signals to it, and the processes under it."""

    def __init__(
        self, argv: Sequence[str], cwd: Path, env: dict[str, str], capture_stdout: bool, read_stdout: bool
    ) -> None:
        self.argv = list(argv)
        self.token = env[TOKEN_VAR]
        self.lines: list[Line] = []
        self._cond = threading.Condition()
        self._open_streams = 0
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a ^C in the test terminal must not reach it
        )
        self._threads = []
        for name in ("stdout", "stderr") if read_stdout else ("stderr",):
            pipe = getattr(self.proc, name)
            if pipe is not None:
                self._open_streams += 1
                thread = threading.Thread(target=self._read, args=(pipe, name), daemon=True)
                thread.start()
                self._threads.append(thread)

    def __repr__(self) -> str:
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        return f"<Asyncsup pid {self.pid} {state}, {len(self.lines)} lines>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, pipe: object, stream: str) -> None:
        for raw in iter(pipe.readline, b""):  # type: ignore[attr-defined]
            line = Line(time.monotonic(), stream, raw.decode("utf-8", "replace").rstrip("\n"))
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    # -- observing ------------------------------------------------------------------------------

    def matching(self, pattern: str, stream: str | None = None) -> list[re.Match[str]]:
        """Every line seen so far that matches `pattern` (re.search), in arrival order."""
        return self._scan(re.compile(pattern), stream, 0)[0]

    def _scan(
        self, regex: re.Pattern[str], stream: str | None, start: int
    ) -> tuple[list[re.Match[str]], int]:
        with self._cond:
            lines = self.lines[start:]
        found = []
        for line in lines:
            if stream is None or line.stream == stream:
                m = regex.search(line.text)
                if m:
                    found.append(m)
        return found, start + len(lines)

    def texts(self, stream: str) -> list[str]:
        with self._cond:
            return [line.text for line in self.lines if line.stream == stream]

    def wait_line(
        self, pattern: str, stream: str | None = None, timeout: float = WAIT, count: int = 1
    ) -> re.Match[str]:
        """The `count`-th line matching `pattern`, waiting for it at most `timeout` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        found: list[re.Match[str]] = []
        scanned = 0
        with self._cond:
            while True:
                more, scanned = self._scan(regex, stream, scanned)
                found += more
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._open_streams == 0:
                    break
                self._cond.wait(left)
        raise AssertionError(
            f"no line #{count} matching {pattern!r} on {stream or 'any stream'} within {timeout}s; "
            f"{self!r}; got:\n{self.dump()}"
        )

    def dump(self, last: int = 80) -> str:
        with self._cond:
            return "\n".join(str(line) for line in self.lines[-last:])

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"asyncsup did not exit within {timeout}s; got:\n{self.dump()}") from None
        for thread in self._threads:
            thread.join(timeout)
        return rc

    # -- acting ---------------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = WAIT) -> int:
        """SIGTERM, then the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    # -- processes ------------------------------------------------------------------------------

    def descendants(self) -> list[int]:
        return descendants(self.pid)

    def token_pids(self) -> list[int]:
        """Every live process (but asyncsup itself) whose environment carries this run's token."""
        return [pid for pid in pids_with_env(TOKEN_VAR, self.token) if pid != self.pid]

    def cleanup(self) -> None:
        """Kill asyncsup and everything it started; a test's failure must not leak processes."""
        if self.proc.poll() is None:
            # Force mode first: asyncsup then SIGKILLs its children's groups itself.
            for _ in range(2):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.token_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# -- /proc helpers --------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = children_of(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children_of(child)
    return out


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, pgid) of a live process, None once it is gone (or a zombie reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                found.append(int(name))
    return found


def pids_with_env(key: str, value: str) -> list[int]:
    needle = f"{key}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(name))
    return found


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict (VmHWM, VmRSS, State, Threads...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def kib(value: str) -> int:
    """'12345 kB' -> 12345."""
    return int(value.split()[0])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_str(value: object) -> str:
    """A Python str/path as a TOML basic string (JSON escapes are valid TOML)."""
    import json

    return json.dumps(str(value))


def child(name: str, *args: object) -> str:
    """A TOML command list running one of tests/children/ with this Python, unbuffered."""
    argv = [PYTHON, "-u", CHILDREN / name, *args]
    return "[" + ", ".join(toml_str(arg) for arg in argv) + "]"


def wait_gone(pids: Sequence[int], timeout: float = WAIT) -> list[int]:
    """Wait (on pidfds, not by polling) until none of `pids` runs; returns those still alive."""
    import select

    fds = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        left = dict(fds)
        deadline = time.monotonic() + timeout
        while left and (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                left.pop(fd, None)
        return sorted(left.values())
    finally:
        for fd in fds:
            os.close(fd)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """For states only /proc shows (no event to wait on): check every 10 ms, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


def log_time(line: str) -> float:
    """The timestamp of a text-format asyncsup log line, as epoch seconds (ms precision)."""
    import datetime

    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    return stamp.timestamp()


# -- fixtures -------------------------------------------------------------------------------------


class Harness:
    """What the `supervise` fixture gives a test: `supervise(config)` starts asyncsup; the helpers
    ride along as attributes so test modules need not import this conftest (import paths differ
    with and without __init__.py files)."""

    PYTHON = PYTHON
    child = staticmethod(child)
    toml_str = staticmethod(toml_str)
    free_port = staticmethod(free_port)
    log_time = staticmethod(log_time)
    wait_gone = staticmethod(wait_gone)
    wait_until = staticmethod(wait_until)
    pids_in_group = staticmethod(pids_in_group)
    proc_stat = staticmethod(proc_stat)
    proc_status = staticmethod(proc_status)
    descendants = staticmethod(descendants)
    kib = staticmethod(kib)

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Asyncsup] = []

    def __call__(
        self,
        config: str,
        *args: str,
        loop: str = "asyncio",
        env: dict[str, str] | None = None,
        capture_stdout: bool = True,
        read_stdout: bool = True,
    ) -> Asyncsup:
        """Write `config` to tmp_path/asyncsup.toml and start `asyncsup run` on it.

        capture_stdout=False sends asyncsup's stdout to /dev/null; read_stdout=False leaves the
        pipe unread (run.proc.stdout is the test's to read), to stall asyncsup's output."""
        path = self.tmp_path / "asyncsup.toml"
        path.write_text(config)
        full_env = {**os.environ, **(env or {}), TOKEN_VAR: uuid.uuid4().hex}
        full_env.pop("ASYNCSUP_LOOP", None)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        argv = [PYTHON, "-m", "asyncsup", "run", str(path), "--loop", loop, *args]
        handle = Asyncsup(argv, self.tmp_path, full_env, capture_stdout, read_stdout)
        self.started.append(handle)
        return handle

    def cleanup(self) -> None:
        for handle in self.started:
            handle.cleanup()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The key scenarios run on both event loops."""
    return str(request.param)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.cleanup()
