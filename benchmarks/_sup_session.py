"""One launched supervisor, and the guarantee that nothing it started outlives the session.

The harness marks itself a child subreaper, so when a supervisor dies its orphans come to us
instead of init: cleanup then only has to kill *our own* descendants (never a pid from an old
list, which the kernel may have handed to someone else's process meanwhile).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import _sup_procfs
from _sup_drivers import Driver, ProgramSpec
from _sup_procfs import BenchTimeout, Tree, wait_for

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for child in _sup_procfs.children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def kill_everything_we_started(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL every descendant of this harness and reap the ones that became ours. Bounded."""
    for _ in range(200):
        pids = descendants(os.getpid())
        alive = [p for p in pids if not _sup_procfs.is_zombie(p)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in _sup_procfs.our_children():
            if proc is not None and pid == proc.pid:
                continue  # Popen reaps its own child; waitpid here would steal its status
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if proc is not None:
            proc.poll()
        if not alive and (proc is None or proc.returncode is not None):
            return
        time.sleep(0.02)


class Drain(threading.Thread):
    """Reads the supervisor's stdout pipe as a container runtime would, discarding it.

    Counts bytes and notes when ``marker`` went by, so the relay measure knows when the last
    line of the child got through without the supervisor's own log lines confusing the count.
    """

    def __init__(self, fd: int, marker: bytes) -> None:
        super().__init__(name="drain", daemon=True)
        self.fd = fd
        self.marker = marker
        self.nbytes = 0
        self.marker_seen_at = 0.0
        self.marker_seen = threading.Event()

    def run(self) -> None:
        keep = b""
        while chunk := os.read(self.fd, 1 << 20):
            self.nbytes += len(chunk)
            if not self.marker_seen.is_set():
                if self.marker in keep + chunk:
                    self.marker_seen_at = time.perf_counter()
                    self.marker_seen.set()
                keep = chunk[-len(self.marker) :]
        os.close(self.fd)


class Session:
    """Launch one supervisor in a temp dir; kill it and all it started on exit, whatever happened."""

    def __init__(
        self,
        driver: Driver,
        programs: list[ProgramSpec],
        program_comm: str,
        *,
        drain_marker: bytes | None = None,
    ) -> None:
        self.driver = driver
        self.programs = programs
        self.program_comm = program_comm
        self.drain_marker = drain_marker
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{driver.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.drain: Drain | None = None
        self.tree: Tree | None = None
        self.launched_at = 0.0
        self._out: IO[bytes] | None = None

    def __repr__(self) -> str:
        state = "not launched" if self.proc is None else f"pid {self.proc.pid}"
        if self.proc is not None and self.proc.returncode is not None:
            state += f", exited with {self.proc.returncode}"
        return f"<Session {self.driver.name} {state} in {self.workdir}>"

    def __enter__(self) -> Session:
        try:
            self._launch()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _launch(self) -> None:
        argv = self.driver.launch_argv(self.workdir, self.programs)
        self._out = open(self.workdir / "supervisor.out", "wb")  # noqa: SIM115 (closed in exit)
        stdout: int | IO[bytes] = self._out
        write_end = -1
        if self.drain_marker is not None:
            read_end, write_end = os.pipe()
            fcntl.fcntl(read_end, F_SETPIPE_SZ, 1 << 20)  # the reader is never the bottleneck
            self.drain = Drain(read_end, self.drain_marker)
            self.drain.start()
            stdout = write_end
        self.launched_at = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **self.driver.env},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=self._out,
                cwd=self.workdir,
                # Own session: a Ctrl-C on the terminal reaches the harness only, which then
                # kills the supervisor itself instead of racing its shutdown.
                start_new_session=True,
            )
        finally:
            if write_end >= 0:
                os.close(write_end)
        self.tree = Tree(self.proc.pid, self.program_comm)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                # A polite chance first (logs get flushed); leftovers are killed below.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.driver.stop_target(self.proc.pid), signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=15)
        finally:
            kill_everything_we_started(self.proc)
            if self.drain is not None:
                self.drain.join(timeout=10)
            if self._out is not None:
                self._out.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- observations -------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise with the supervisor's own words if it died (bad config, crash)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = (self.workdir / "supervisor.out").read_bytes()[-1500:].decode(errors="replace")
            raise RuntimeError(
                f"{self.driver.name} exited with {self.proc.returncode}; its output ends:\n{tail}"
            )

    def wait_running(self, count: int, timeout: float) -> float:
        """Seconds from launch until ``count`` children run the program."""
        assert self.tree is not None
        tree = self.tree

        def ready() -> bool:
            self.check_alive()
            return len(tree.running()) >= count

        what = f"{count} {self.program_comm} children"
        seen = wait_for(what, ready, timeout, interval=0.002, relative=0.02)
        return seen - self.launched_at

    def supervisor_pid(self) -> int:
        """The process that owns the children (below a PID-1 shim when there is one)."""
        assert self.tree is not None
        some = sorted(self.tree.running())
        return self.tree.supervisor_of(some[0]) if some else self.tree.root

    def shim_pid(self, supervisor: int) -> int | None:
        """The supervisor's parent when we did not launch the supervisor itself (PID-1 shim)."""
        if supervisor == self.tree.root:  # type: ignore[union-attr]
            return None
        return _sup_procfs.parent(supervisor)

    def kill_one_and_wait(self, victim: int, timeout: float) -> float:
        """SIGKILL one child; seconds until a replacement has exec'd the program."""
        assert self.tree is not None
        tree = self.tree
        before = tree.running()

        def replaced() -> bool:
            self.check_alive()
            return bool(tree.running() - before)

        start = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        return wait_for(f"a new {self.program_comm} after kill -9", replaced, timeout) - start

    def stop(self, timeout: float) -> tuple[float, int]:
        """SIGTERM -> supervisor exited: (seconds, children still alive at that moment)."""
        assert self.proc is not None
        target = self.driver.stop_target(self.proc.pid)
        start = time.perf_counter()
        os.kill(target, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchTimeout(f"{self.driver.name} to exit after SIGTERM", timeout) from None
        took = time.perf_counter() - start
        left = [p for p in descendants(os.getpid()) if not _sup_procfs.is_zombie(p)]
        return took, len(left)
