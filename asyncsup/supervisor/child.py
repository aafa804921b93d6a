"""One supervised OS process: spawn it, watch it, restart it by policy, stop it with escalation."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from .._aio import Flag, race, wait_any
from .._proc import pid_exists
from ..config import Program
from ..errors import SpawnError
from .backoff import FlapGuard, backoff_delay
from .execas import wrap_command
from .exits import ExitStatus, signal_name
from .output import Framer, PipeRelay, connect_relay, line_matcher, make_pipe
from .readiness import wait_ready
from .runtime import Runtime
from .spawn import DEVNULL, STDOUT, ChildProcess, spawn
from .states import State
from .tail import OutputTail

log = logging.getLogger("asyncsup.supervisor")

OUTPUT_DRAIN = 2.0  # seconds to read what an exited process left in its pipes


@dataclass(frozen=True)
class ChildInfo:
    """A snapshot for status displays."""

    name: str
    state: State
    pid: int | None
    since: float
    restarts: int
    last_exit: ExitStatus | None


class Child:
    """One process slot of a program (`web:0`), and the state machine that keeps it in its state."""

    def __init__(
        self,
        program: Program,
        num: int,
        name: str,
        runtime: Runtime,
        on_change: Callable[[Child, State, State], None],
    ) -> None:
        self.program = program
        self.num = num
        self.name = name
        self.runtime = runtime
        self.state = State.STOPPED
        self.since = time.time()
        self.process: ChildProcess | None = None
        self.restarts = 0
        self.failures = 0  # consecutive failures to start; reset once RUNNING
        self.last_exit: ExitStatus | None = None
        self._on_change = on_change
        self._flap = FlapGuard(program.flap_limit, program.flap_window)
        self._wanted = Flag()
        self._stop = Flag()
        self._ready = Flag()
        self._relays: list[PipeRelay] = []
        self._last_group: int | None = None  # process group of the last copy, for leftovers
        self._settled = Flag()
        self._settled.set()
        self._changed = Flag()  # set and replaced at each state change (wait_change)
        self._not_ready = False
        self.tails = {"stdout": OutputTail(), "stderr": OutputTail()}  # for `asyncsup ctl tail`

    def __repr__(self) -> str:
        pid = f" pid {self.process.pid}" if self.process and self.state.is_up else ""
        last = f", last {self.last_exit}" if self.last_exit else ""
        return f"<Child {self.name} {self.state}{pid}, {self.restarts} restarts{last}>"

    def info(self) -> ChildInfo:
        pid = self.process.pid if self.process and self.state.is_up else None
        return ChildInfo(self.name, self.state, pid, self.since, self.restarts, self.last_exit)

    # -- requests (called by the program, the control plane, the shutdown) ---------------------

    def start(self) -> None:
        if self.state.is_settled:  # an explicit start (or restart from FATAL) gets fresh retries
            self.failures = 0
        self._stop.clear()
        self._wanted.set()

    def stop(self) -> None:
        self._wanted.clear()
        self._stop.set()
        if not self.state.is_up:  # no process to stop, but what the last one left goes too (PID1 #21)
            self._kill_leftovers()

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.state.is_up:
            _kill(self.process.pid, signum)

    # -- the state machine ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the process in the state asked for. Runs until its owner cancels it, once settled."""
        while True:
            await self._wanted.wait()
            if not self._wanted.is_set():  # stopped again before we got to run
                continue
            status, was_up = await self._live()
            if self._stop.is_set():
                self.last_exit = status  # `ctl status` shows how the stop ended (TERM, or KILL)
                self._set(State.STOPPED, str(status))
                continue
            await self._after_exit(status, was_up)
            # A backoff ends early on a stop, and on a shutdown, whose own stop() may come later
            # (dependency order): either way no new process starts.
            if self.state is State.BACKOFF and (self._stop.is_set() or self.runtime.shutdown.requested):
                self._wanted.clear()
                self._set(State.STOPPED, "stopped while backing off")

    async def wait_settled(self) -> None:
        """Until nothing will happen without a request: STOPPED, EXITED or FATAL."""
        await self._settled.wait()

    async def wait_change(self) -> State:
        """Until the next state change; returns the new state (`ctl start` waits on this)."""
        await self._changed.wait()
        return self.state

    async def _live(self) -> tuple[ExitStatus, bool]:
        """One life of the process: spawn, reach RUNNING, exit (by itself or by request)."""
        self._kill_leftovers()
        self._set(State.STARTING)
        self._flap.record_start(time.monotonic())
        try:
            process = await self._spawn()
        except SpawnError as exc:
            log.error("%s", exc)
            return ExitStatus(spawn_errno=exc.errno), False
        was_up = await self._wait_up(process)
        if was_up:
            await wait_any(process.exited, self._stop)
        stopped = process.returncode is None
        if stopped:
            await self._terminate(process)
        status = await self._reap(process)
        if stopped:  # a stop means the whole group: members that ignored the signal go too
            _killpg(process.pid, signal.SIGKILL)
        await self._drain_output()
        return status, was_up

    async def _wait_up(self, process: ChildProcess) -> bool:
        """STARTING -> RUNNING once startsecs passed and the ready check said yes.

        With startsecs = 0 and no ready check it is up once spawned, even if it already exited:
        racing a zero sleep against a quick exit would count the start as failed, and such a
        program would go FATAL instead of being restarted under the flap guard (supervisord #1285).
        """
        self._not_ready = False
        if self.program.startsecs == 0 and self.program.ready is None:
            winner = 0
        else:
            winner = await race(self._until_up, lambda: wait_any(process.exited, self._stop))
        if winner != 0 or self._not_ready:
            return False
        self.failures = 0
        self._set(State.RUNNING, f"pid {process.pid}")
        return True

    async def _until_up(self) -> None:
        await anyio.sleep(self.program.startsecs)
        if self.program.ready is not None:
            ok = await wait_ready(self.program.ready, self._ready, self.runtime.reaper)
            if not ok:
                timeout = self.program.ready.timeout
                log.warning("%s: not ready within %gs; stopping it", self.name, timeout)
                self._not_ready = True  # ends the start as a failed one; _live stops the process

    async def _after_exit(self, status: ExitStatus, was_up: bool) -> None:
        """The restart policy: back off quick failures, restart or settle the others."""
        self.last_exit = status
        if self.runtime.shutdown.requested:  # step 1 of the shutdown: no more restarts
            self._set(State.EXITED, f"{status}; not restarted during shutdown")
            self._wanted.clear()
            return
        if not was_up:
            self.failures += 1
            retries = self.program.startretries
            if retries is not None and self.failures > retries:
                self._set(State.FATAL, f"{status}; gave up after {_plural(self.failures, 'failed start')}")
                self._wanted.clear()
                return
            await self._backoff(backoff_delay(self.program.backoff, self.failures), status)
        elif not self._should_restart(status):
            self._set(State.EXITED, str(status))
            self._wanted.clear()
            return
        elif excess := self._flap.excess(time.monotonic()):
            await self._backoff(backoff_delay(self.program.backoff, excess), f"{status}, flapping")
        else:
            self._set(State.EXITED, f"{status}; restarting")
        self.restarts += 1

    def _should_restart(self, status: ExitStatus) -> bool:
        policy = self.program.autorestart
        if policy == "always":
            return True
        if policy == "never":
            return False
        return status.signal is not None or status.code not in self.program.exitcodes

    async def _backoff(self, delay: float, why: object) -> None:
        self._set(State.BACKOFF, f"{why}; retry in {delay:.2f}s")
        with anyio.move_on_after(delay):
            await wait_any(self._stop, self.runtime.shutdown.requested_flag)

    # -- the OS side ------------------------------------------------------------------------------

    async def _spawn(self) -> ChildProcess:
        program = self.program
        argv, login_env = wrap_command(
            program.command, user=program.user, umask=program.umask, process=self.name
        )
        out_r, out_w = make_pipe()
        err_r, err_w = (-1, -1) if program.redirect_stderr else make_pipe()
        self._ready.clear()
        try:
            process = spawn(
                argv,
                stdin=None if program.stdin == "inherit" else DEVNULL,
                stdout=out_w,
                stderr=STDOUT if err_w < 0 else err_w,
                cwd=program.directory,
                env=self._environment(login_env),
                tracker=self.runtime.reaper,
            )
        except OSError as exc:
            for fd in (out_r, err_r):
                if fd >= 0:
                    os.close(fd)
            reason = exc.strerror or str(exc)
            raise SpawnError(self.name, program.command[0], reason, exc.errno) from exc
        finally:
            for fd in (out_w, err_w):
                if fd >= 0:
                    os.close(fd)
        await self._relay(out_r, "stdout")
        if err_r >= 0:
            await self._relay(err_r, "stderr")
        self.process = process
        log.debug("%s: spawned pid %d: %s", self.name, process.pid, " ".join(program.command))
        return process

    async def _relay(self, read_fd: int, stream: str) -> None:
        output = self.program.stdout if stream == "stdout" else self.program.stderr
        console = self.runtime.stdout if stream == "stdout" else self.runtime.stderr
        framer = Framer(self.name, stream, self.runtime.json_lines, prefixed=bool(output.prefix))
        ready = self.program.ready
        on_line = None
        if ready is not None and ready.line is not None and stream == "stdout":
            on_line = line_matcher(ready.line, self._ready.set)
        relay = PipeRelay(framer, self.runtime.sink_for(output, console), on_line, self.tails[stream])
        await connect_relay(read_fd, relay)
        self._relays = [r for r in self._relays if not r.closed.done()] + [relay]

    def _environment(self, login_env: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.runtime.environ)
        env.update(login_env)
        env.update(
            ASYNCSUP_PROGRAM=self.program.name,
            ASYNCSUP_PROCESS_NAME=self.name,
            ASYNCSUP_PROCESS_NUM=str(self.num),
        )
        return _apply(env, self.program.environment)

    async def _terminate(self, process: ChildProcess) -> None:
        """STOPPING: the stop signal to the group, then SIGKILL after stop_timeout or when forced."""
        sig = self.program.stop_signal
        self._set(State.STOPPING, f"sent {sig.name}")
        _killpg(process.pid, sig)
        shutdown = self.runtime.shutdown
        with anyio.move_on_after(self.program.stop_timeout):
            await wait_any(process.exited, shutdown.forced_flag)
        if process.returncode is None:
            if shutdown.forced:
                log.warning("%s: shutdown forced while it handled %s; sending SIGKILL", self.name, sig.name)
            else:
                log.warning(
                    "%s: still running %gs after %s; sending SIGKILL (raise stop_timeout or make it "
                    "exit on %s)", self.name, self.program.stop_timeout, sig.name, sig.name,
                )
            _killpg(process.pid, signal.SIGKILL)

    async def _reap(self, process: ChildProcess) -> ExitStatus:
        returncode = await process.wait()
        # Remember the group only if members are left: while they live, the kernel cannot reuse
        # its number, so a later killpg cannot hit a stranger's group.
        self._last_group = process.pid if _killpg(process.pid, 0) else None
        return ExitStatus.from_returncode(returncode)

    def _kill_leftovers(self) -> None:
        """Before the next copy starts, or at a stop, kill what the last one left in its group.

        Not at exit: an orphan that outlives its parent is reaped with its own status (PID 1 duty).
        But a restart must not run beside a stray consumer of the previous copy, and a stopped
        program must not leave one running (when asyncsup is not PID 1, nothing else would end it).
        """
        group, self._last_group = self._last_group, None
        # The leader was reaped, so a process with its pid now is a newcomer, and the kernel reuses
        # a pid only once no group bears its number: the old group is gone, this one a stranger's.
        if group is None or pid_exists(group):
            return
        if _killpg(group, signal.SIGKILL):
            log.warning("%s: killed what the previous copy left in process group %d", self.name, group)

    async def _drain_output(self) -> None:
        """Relay what the process wrote before it exited, before its exit is logged and before a
        shutdown closes the pipes: its last lines are often the traceback that explains the exit.
        Until the pipes are empty rather than closed (a daemon may hold them open), and bounded."""
        streams = 1 if self.program.redirect_stderr else 2
        relays = self._relays[-streams:]
        with anyio.move_on_after(OUTPUT_DRAIN):
            # No event says "the kernel buffer is empty"; rare, short and bounded.
            while not self.runtime.shutdown.forced and not all(r.drained() for r in relays):  # noqa: ASYNC110
                await anyio.sleep(0.01)

    def close_relays(self) -> None:
        for relay in self._relays:
            relay.close()

    def _set(self, state: State, detail: str = "") -> None:
        old, self.state, self.since = self.state, state, time.time()
        if state.is_settled:
            self._settled.set()
        else:
            self._settled.clear()
        log.info("%s: %s -> %s%s", self.name, old, state, f" ({detail})" if detail else "")
        self._changed.set()
        self._changed = Flag()
        self._on_change(self, old, state)


def _apply(env: dict[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _killpg(pid: int, signum: int) -> bool:
    """Signal a process group; False when it has no member left (or we may not)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("pid %d: not allowed to send %s to its group", pid, signal_name(signum))
        return False
    return True


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
