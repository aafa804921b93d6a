"""The commands of the control socket: what `asyncsup ctl` can ask, and what became of it.

Start and stop wait for the outcome, like supervisord's `wait=True`: `start` answers once the process
is RUNNING (or failed to get there), `stop` once it is stopped. Several programs are handled in
dependency order and otherwise in parallel: a program starts after the selected programs it depends
on, and stops after the selected programs that depend on it (supervisord stops one group at a time).
Results keep supervisorctl's words (`started`, `ERROR (already started)`) so operators read them as before.
"""

from __future__ import annotations

import codecs
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .._version import __version__
from ..errors import ControlError, UnknownProgram, did_you_mean
from ..supervisor.child import Child
from ..supervisor.states import State
from ..supervisor.tail import OutputTail
from .protocol import (
    BAD_ARGUMENTS,
    SHUTTING_DOWN,
    UNKNOWN_COMMAND,
    UNKNOWN_NAME,
    VERSION,
    Reply,
    Request,
    encode_event,
    encode_reply,
)
from .status import process_status

if TYPE_CHECKING:
    from .plane import ControlPlane
    from .reload import Reloader

log = logging.getLogger("asyncsup.control")

Send = Callable[[bytes], Awaitable[None]]
Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Outcome:
    """What became of one process: `done` on success, else an error in supervisorctl's words."""

    name: str
    done: str = ""  # "started", "stopped", "signalled"
    error: str = ""  # "already started", "not running", "spawn error", "abnormal termination"
    detail: str = ""  # the last exit, when it explains the error

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "done": self.done, "error": self.error, "detail": self.detail}


@dataclass(frozen=True)
class TailFollow:
    """`tail -f`: the last lines, then every new chunk, until the client goes away."""

    name: str
    stream: str
    tail: OutputTail
    lines: int

    async def run(self, send: Send) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a chunk may end mid-character
        with self.tail.follow() as follower:  # subscribed before the snapshot: nothing missed
            first = {"name": self.name, "stream": self.stream, "data": _text(self.tail.lines(self.lines))}
            await send(encode_reply(Reply(ok=True, result=first, more=True)))
            while True:
                data, lost = await follower.receive()
                await send(encode_event(decoder.decode(data), lost))


class Commands:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.table: dict[str, Handler] = {
            "status": self.status,
            "start": self.start,
            "stop": self.stop,
            "restart": self.restart,
            "signal": self.signal,
            "tail": self.tail,
            "pid": self.pid,
            "version": self.version,
            "shutdown": self.shutdown,
            "reread": self.reread,
            "update": self.update,
            "stop-workers": self.stop_workers,
        }

    def __repr__(self) -> str:
        return f"<Commands {', '.join(self.table)}>"

    async def call(self, request: Request) -> Any:
        """The result of a request (or a TailFollow to run); ControlError carries the error code."""
        handler = self.table.get(request.cmd)
        if handler is None:
            hint = did_you_mean(request.cmd, self.table)
            known = ", ".join(self.table)
            raise ControlError(f"unknown command {request.cmd!r}{hint} (known: {known})", UNKNOWN_COMMAND)
        try:
            return await handler(request.args)
        except UnknownProgram as exc:
            raise ControlError(str(exc), UNKNOWN_NAME) from None

    # -- reading -----------------------------------------------------------------------------------

    async def status(self, args: Mapping[str, Any]) -> dict[str, Any]:
        processes = await process_status(self._select(args, default=["all"]))
        ready, why = self.plane.readiness()
        return {
            "processes": [p.as_json() for p in processes],
            "statistics": await self.plane.statistics(),
            "ready": ready,
            "why": why,
            "pid": os.getpid(),
            "version": __version__,
        }

    async def pid(self, args: Mapping[str, Any]) -> dict[str, Any]:
        infos = [child.info() for child in self._select(args, default=[])]
        return {"pid": os.getpid(), "processes": [{"name": i.name, "pid": i.pid} for i in infos]}

    async def version(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return {"version": __version__, "protocol": VERSION}

    async def tail(self, args: Mapping[str, Any]) -> dict[str, Any] | TailFollow:
        name, stream = _string(args, "name"), args.get("stream", "stdout")
        lines, follow = args.get("lines", 10), args.get("follow", False)
        if stream not in ("stdout", "stderr"):
            raise ControlError(f'stream must be "stdout" or "stderr", not {stream!r}', BAD_ARGUMENTS)
        if not isinstance(lines, int) or isinstance(lines, bool) or lines < 0:
            raise ControlError(f"lines must be an integer >= 0, not {lines!r}", BAD_ARGUMENTS)
        child = self._one(name)
        if follow is True:
            return TailFollow(child.name, stream, child.tails[stream], lines)
        return {"name": child.name, "stream": stream, "data": _text(child.tails[stream].lines(lines))}

    # -- acting ------------------------------------------------------------------------------------

    async def start(self, args: Mapping[str, Any]) -> dict[str, Any]:
        children = self._select(args)
        self._refuse_when_shutting_down()
        return {"results": [o.as_json() for o in await self._in_order(children, _start, reverse=False)]}

    async def stop(self, args: Mapping[str, Any]) -> dict[str, Any]:
        children = self._select(args)
        return {"results": [o.as_json() for o in await self._in_order(children, _stop, reverse=True)]}

    async def restart(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Stop then start, like supervisorctl: `web: stopped`, `web: started`."""
        children = self._select(args)
        self._refuse_when_shutting_down()
        stopped = await self._in_order(children, _stop, reverse=True)
        self._refuse_when_shutting_down()
        started = await self._in_order(children, _start, reverse=False)
        return {"results": [o.as_json() for o in [*stopped, *started]]}

    async def signal(self, args: Mapping[str, Any]) -> dict[str, Any]:
        signum = _signal(args.get("signal"))
        return {"results": [_signal_one(child, signum).as_json() for child in self._select(args)]}

    async def shutdown(self, args: Mapping[str, Any]) -> dict[str, Any]:
        shutdown = self.plane.shutdown
        if shutdown.requested:
            log.warning("asyncsup ctl shutdown received again: stopping now")
            shutdown.force("asyncsup ctl shutdown received again")
        else:
            log.info("asyncsup ctl shutdown: draining (deadline %gs; again to stop now)", shutdown.timeout)
            shutdown.request("asyncsup ctl shutdown")
        return {"reason": shutdown.reason, "forced": shutdown.forced}

    # -- reload and deploy (control/reload.py) ------------------------------------------------------

    async def reread(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """What `update` would change, changing nothing."""
        changes = await self._reloader().reread()
        return {"changes": [{"change": str(c), "done": []} for c in changes]}

    async def update(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the config file; answers once every change is done (rolling restarts included)."""
        done = await self._reloader().update()
        return {"changes": [{"change": str(c), "done": lines} for c, lines in done]}

    async def stop_workers(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Restart consumers with fresh code and restart_on_deploy programs; answers once done."""
        return {"restarted": await self._reloader().stop_workers()}

    def _reloader(self) -> Reloader:
        if self.plane.reloader is None:
            raise ControlError("this asyncsup cannot reload", UNKNOWN_COMMAND)
        return self.plane.reloader

    # -- helpers -----------------------------------------------------------------------------------

    def _refuse_when_shutting_down(self) -> None:
        if self.plane.shutdown.requested:
            raise ControlError(f"asyncsup is shutting down ({self.plane.shutdown.reason})", SHUTTING_DOWN)

    def _select(self, args: Mapping[str, Any], default: Sequence[str] | None = None) -> list[Child]:
        """The processes named by args["names"], each once, in the order named."""
        names = args.get("names") or default
        if names is None:
            raise ControlError('a process name is required: NAME, PROGRAM:* or "all"', BAD_ARGUMENTS)
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ControlError('"names" must be a list of process names', BAD_ARGUMENTS)
        selected: dict[str, Child] = {}
        for name in names:
            for child in self.plane.supervisor.select(name):
                selected.setdefault(child.name, child)
        return list(selected.values())

    def _one(self, name: str) -> Child:
        children = self.plane.supervisor.select(name)
        if len(children) != 1:
            names = ", ".join(child.name for child in children)
            raise ControlError(f"{name!r} names {len(children)} processes ({names}); name one", BAD_ARGUMENTS)
        return children[0]

    async def _in_order(
        self, children: list[Child], action: Callable[[Child], Awaitable[Outcome]], *, reverse: bool
    ) -> list[Outcome]:
        """`action` on every child; programs in dependency order (reversed: dependents first)."""
        by_program: dict[str, list[Child]] = {}
        for child in children:
            by_program.setdefault(child.program.name, []).append(child)
        done = {name: anyio.Event() for name in by_program}
        outcomes: dict[str, Outcome] = {}

        async def one(child: Child) -> None:
            outcomes[child.name] = await action(child)

        async def program(name: str) -> None:
            for other in self._waits_for(name, by_program, reverse):
                await done[other].wait()
            async with anyio.create_task_group() as tg:
                for child in by_program[name]:
                    tg.start_soon(one, child)
            done[name].set()

        async with anyio.create_task_group() as tg:
            for name in by_program:
                tg.start_soon(program, name)
        return [outcomes[child.name] for child in children]

    def _waits_for(self, name: str, selected: Mapping[str, object], reverse: bool) -> list[str]:
        programs = self.plane.supervisor.programs
        if not reverse:  # starting: after the programs it depends on
            return [dep for dep in programs[name].program.depends_on if dep in selected]
        return [other for other in selected if name in programs[other].program.depends_on]


async def _start(child: Child) -> Outcome:
    if child.state is State.STOPPING:
        await child.wait_settled()
    if not child.state.is_settled:
        return Outcome(child.name, error="already started")
    child.start()
    state = await child.wait_change()  # from a settled state, the first change is to STARTING
    while state is State.STARTING:
        state = await child.wait_change()
    if state is State.RUNNING:
        return Outcome(child.name, done="started")
    status = child.last_exit
    spawn_failed = status is not None and status.spawn_errno is not None
    error = "spawn error" if spawn_failed else "abnormal termination"
    return Outcome(child.name, error=error, detail=str(status) if status else str(state))


async def _stop(child: Child) -> Outcome:
    if child.state.is_settled:
        return Outcome(child.name, error="not running")
    child.stop()
    await child.wait_settled()
    return Outcome(child.name, done="stopped")


def _signal_one(child: Child, signum: int) -> Outcome:
    if not child.state.is_up or child.info().pid is None:
        return Outcome(child.name, error="not running")
    child.send_signal(signum)
    return Outcome(child.name, done="signalled")


def _signal(raw: object) -> signal.Signals:
    """A signal from "HUP", "SIGHUP", "1" or 1."""
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    try:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return signal.Signals(raw)
        if isinstance(raw, str):
            return signal.Signals[f"SIG{raw.upper().removeprefix('SIG')}"]
    except (KeyError, ValueError):
        pass
    raise ControlError(f"bad signal name {raw!r} (e.g. HUP, USR1, TERM or a number)", BAD_ARGUMENTS)


def _string(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f'"{key}" must be a non-empty string', BAD_ARGUMENTS)
    return value


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
