"""A harness to run a command as PID 1 of a fresh PID namespace and watch it from the host.

``unshare --pid --fork --mount-proc`` plays the container runtime (we are root; no Docker
needed). From the host, a signal to the namespace's init plays ``docker kill``/``docker stop``;
``nsenter`` plays ``docker exec``. Processes are observed through the host's /proc: the
namespace's processes are the descendants of its init, walked via ``/proc/<pid>/task/*/children``.

Output is read by one thread per pipe into a line list; ``wait_line`` blocks on a condition
variable until a matching line arrives or the timeout passes, so tests wait for events and never
sleep-and-hope. The only polling is ``wait_until``, for kernel state that has no event (a pid
appearing, a zombie vanishing); it is bounded and says what it waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILDREN = ROOT / "tests" / "children"
PYTHON = sys.executable

LINE_TIMEOUT = 20.0  # generous: the machine is noisy; a pass is usually far faster


def require_pid1_support() -> None:
    """Skip without root or unshare/nsenter; with CI=true that is a failure, not a skip."""
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    reason = ""
    if os.geteuid() != 0:
        reason = "PID-1 tests need root (unshare --pid)"
    elif missing:
        reason = f"PID-1 tests need {' and '.join(missing)} (util-linux)"
    if not reason:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true forbids skipping")
    pytest.skip(reason)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll kernel state that has no event to wait on; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


# -- /proc --------------------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z, T, ...), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} when gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def children_of(pid: int) -> list[int]:
    """Children of every thread of pid."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below pid (breadth first), not pid itself."""
    found, frontier = [], [pid]
    while frontier:
        kids = [c for p in frontier for c in children_of(p)]
        found += kids
        frontier = kids
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state != "Z"


# -- the namespace --------------------------------------------------------------------------------


@dataclass
class Stream:
    """Lines read from one pipe, with a condition to wait for the next."""

    name: str
    lines: list[str] = field(default_factory=list)
    closed: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def pump(self, pipe: Iterable[bytes]) -> None:
        for raw in pipe:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pattern: str, timeout: float, start: int = 0, count: int = 1) -> list[str]:
        """The first `count` lines from index `start` on matching `pattern` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [line for line in self.lines[start:] if regex.search(line)]
                if len(hits) >= count:
                    return hits[:count]
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    why = "the pipe closed" if self.closed else f"{timeout:g}s passed"
                    raise AssertionError(
                        f"{self.name}: {len(hits)}/{count} lines matching {pattern!r} before "
                        f"{why}; got:\n" + "\n".join(self.lines[-40:])
                    )
                self.cond.wait(left)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        with self.cond:
            return [line for line in self.lines if regex.search(line)]


class Namespace:
    """`argv` running as PID 1 of a new PID namespace; a context manager that cleans up.

    With ``pid1=False`` the command runs as a plain child instead (not PID 1), in its own session;
    then ``init`` is its pid and the namespace methods observe its process tree.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        pass_fds: Iterable[int] = (),
        cwd: Path | None = None,
        pid1: bool = True,
        tty: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.pid1 = pid1
        self.stdout = Stream("stdout")
        self.stderr = Stream("stderr")
        prefix = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] if pid1 else []
        self.tty: int | None = None
        if tty:  # stdin, stdout and stderr on one pty, its controlling tty: all lines in stdout
            self.tty, slave = pty.openpty()
            prefix = ["setsid", "--ctty", *prefix]
            stdin = stdout = stderr = slave
        else:
            stdout = stderr = subprocess.PIPE
        self._popen = subprocess.Popen(
            [*prefix, *self.argv],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=not tty,  # a ^C in the test's terminal must not reach it
        )
        if self.tty is not None:
            os.close(slave)
            self.stderr.closed = True
            pipes = [(self.stdout, _tty_lines(self.tty))]
        else:
            pipes = [(self.stdout, self._popen.stdout), (self.stderr, self._popen.stderr)]
        self._pumps = [threading.Thread(target=s.pump, args=(p,), daemon=True) for s, p in pipes]
        for pump in self._pumps:
            pump.start()
        self.init = wait_until(self._find_init, LINE_TIMEOUT, "unshare to fork the namespace init")
        self.started = time.monotonic()

    def __repr__(self) -> str:
        rc = self._popen.returncode
        state = f"exited rc {rc}" if rc is not None else f"running, init host pid {self.init}"
        return f"<Namespace {' '.join(self.argv[:4])}... {state}>"

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _find_init(self) -> int | None:
        if not self.pid1:
            return self._popen.pid
        kids = children_of(self._popen.pid)  # setsid execs unshare: the same pid
        return kids[0] if kids else None

    def write_tty(self, data: bytes) -> None:
        """Type on the terminal (tty mode): b"\\x03" is a ^C, b"\\x1a" a ^Z."""
        assert self.tty is not None, "not started with tty=True"
        os.write(self.tty, data)

    # -- acting -----------------------------------------------------------------------------------

    def kill(self, sig: int) -> None:
        """A signal from the host to the namespace's PID 1 (`docker kill -s`, `docker stop`)."""
        os.kill(self.init, sig)

    def exec_inside(self, command: str, timeout: float = LINE_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the namespace (`docker exec`); /proc is the namespace's."""
        return subprocess.run(
            ["nsenter", "-t", str(self.init), "-p", "-m", "--", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait(self, timeout: float = LINE_TIMEOUT) -> int:
        """The exit status as a shell reports it (128+N when unshare died of signal N)."""
        rc = self._popen.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        return 128 - rc if rc < 0 else rc

    def close(self) -> None:
        if self._popen.poll() is None:
            leftovers = [] if self.pid1 else descendants(self.init)
            self._popen.kill()  # --kill-child takes the namespace init, hence everything, with it
            self._popen.wait(LINE_TIMEOUT)
            for pid in leftovers:  # not namespaced: nobody else would kill them
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pump in self._pumps:
            pump.join(LINE_TIMEOUT)
        for pipe in (self._popen.stdout, self._popen.stderr):
            if pipe is not None:
                pipe.close()
        if self.tty is not None:
            os.close(self.tty)
            self.tty = None

    # -- observing --------------------------------------------------------------------------------

    def wait_line(
        self,
        pattern: str,
        *,
        stream: str = "stderr",
        timeout: float = LINE_TIMEOUT,
        start: int = 0,
        count: int = 1,
    ) -> list[str]:
        return self._stream(stream).wait(pattern, timeout, start, count)

    def mark(self, stream: str = "stderr") -> int:
        """The index of the next line: wait_line(start=mark) sees only what comes after now."""
        with self._stream(stream).cond:
            return len(self._stream(stream).lines)

    def lines(self, stream: str = "stderr") -> list[str]:
        with self._stream(stream).cond:
            return list(self._stream(stream).lines)

    def _stream(self, name: str) -> Stream:
        return self.stdout if name == "stdout" else self.stderr

    def pids(self) -> list[int]:
        """Host pids of every process in the namespace, init first."""
        return [self.init, *descendants(self.init)]

    def zombies(self) -> list[int]:
        return [pid for pid in self.pids() if proc_state(pid) == "Z"]

    def supervisor(self) -> int:
        """Host pid of the process running the supervisor: pid 2 in shim mode, else init."""
        me = cmdline(self.init)
        kids = [k for k in children_of(self.init) if cmdline(k) == me]
        return kids[0] if kids else self.init

    def find(self, needle: str) -> list[int]:
        """Host pids in the namespace whose command line contains `needle`."""
        return [pid for pid in self.pids() if needle in " ".join(cmdline(pid))]

    def host_pid(self, ns_pid: int) -> int:
        """A namespace pid (as printed by a worker) as the host sees it."""
        found = [pid for pid in self.pids() if self.ns_pid(pid) == ns_pid]
        assert found, f"no process with pid {ns_pid} in the namespace"
        return found[0]

    def ns_pid(self, host_pid: int) -> int:
        """A host pid as the namespace sees it."""
        return int(proc_status(host_pid)["NSpid"].split()[-1])


def _tty_lines(master: int) -> Iterator[bytes]:
    """Lines read from a pty master, without the \\r and the echoed ^C and ^Z; ends at EIO (hung up)."""
    reader = open(master, "rb", buffering=0, closefd=False)  # noqa: SIM115
    with contextlib.suppress(OSError), reader:
        for line in reader:
            yield line.replace(b"\r", b"").replace(b"^C", b"").replace(b"^Z", b"")


# -- asyncsup as PID 1 ----------------------------------------------------------------------------


def asyncsup_argv(config: Path, loop: str, *flags: str) -> list[str]:
    return [PYTHON, "-m", "asyncsup", "run", str(config), "--loop", loop, *flags]


def asyncsup_env(loop: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update({"ASYNCSUP_LOOP": loop, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **extra})
    return env


def child(name: str, *args: str) -> str:
    """A TOML command list running a script of tests/children/ with this Python, unbuffered."""
    return json.dumps([PYTHON, "-u", str(CHILDREN / name), *args])


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_asyncsup(
    tmp_path: Path, toml: str, loop: str, *flags: str, env: dict[str, str] | None = None, **kw: Any
) -> Namespace:
    """Write the config and start `python -m asyncsup run` as PID 1; use as a context manager."""
    config = write_config(tmp_path / "asyncsup.toml", textwrap.dedent(toml))
    full_env = asyncsup_env(loop, **(env or {}))
    return Namespace(asyncsup_argv(config, loop, *flags), env=full_env, cwd=tmp_path, **kw)


def signal_name(sig: int) -> str:
    return signal.Signals(sig).name


# -- configs for the conformance cases -------------------------------------------------------------

LOOPS = ["asyncio", "uvloop"]
MODES = {"shim": (), "in-process": ("--no-shim",)}
ORPHAN = r"INFO asyncsup\.reaper: reaped orphan pid \d+ \((?P<status>[^)]*)\)"
HEADER = '[asyncsup]\nshutdown_timeout = "10s"\n'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str) and value.startswith("["):  # already a TOML list (child())
        return value
    return json.dumps(value)


def program(name: str, command: Any, **keys: Any) -> str:
    """One [programs.NAME] table; commands given as a list or as a shell line for `sh -c`."""
    if isinstance(command, str) and not command.startswith("["):
        command = ["sh", "-c", command]
    keys = {"startsecs": 0, "autorestart": "never", "stop_timeout": "2s", **keys}
    lines = [f"[programs.{name}]", f"command = {toml_value(command)}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def start(tmp_path: Path, loop: str, mode: str, *programs: str, **kw: Any) -> Namespace:
    header = kw.pop("header", HEADER)
    flags = (*MODES[mode], *kw.pop("flags", ()))
    return run_asyncsup(tmp_path, header + "\n".join(programs), loop, *flags, **kw)


def orphan_statuses(ns: Namespace) -> list[str]:
    return [re.search(ORPHAN, line)["status"] for line in ns.lines() if re.search(ORPHAN, line)]  # type: ignore[index]


def stop(ns: Namespace, expected: int = 0) -> None:
    """SIGTERM from the host (`docker stop`) and the exit status it must give."""
    ns.kill(signal.SIGTERM)
    assert ns.wait() == expected, "\n".join(ns.lines()[-30:])


def assert_clean_log(ns: Namespace) -> None:
    text = "\n".join(ns.lines())
    for bad in ("Traceback", "Unknown child process", "already read", "returncode 255"):
        assert bad not in text, f"{bad!r} in asyncsup's log:\n{text}"
