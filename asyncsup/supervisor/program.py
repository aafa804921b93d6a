"""A program: N copies of one command, started after its dependencies, with one restart policy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio
from anyio.abc import TaskGroup

from ..config import Program
from .child import Child
from .runtime import Runtime
from .states import State

log = logging.getLogger("asyncsup.supervisor")


class ProgramRunner:
    """Owns the Child of each process of one program, and says when they are all RUNNING."""

    def __init__(self, program: Program, runtime: Runtime) -> None:
        self.program = program
        self.runtime = runtime
        self.children = [Child(program, num, name, runtime, self._on_change) for num, name in copies(program)]
        self._running = asyncio.Event()  # every copy reached RUNNING once: dependents may start
        self.stopped = asyncio.Event()  # stopped for good at shutdown: what it depends on may stop
        # A reload adds and retires copies while the program runs: each copy's task has its own scope.
        self._tg: TaskGroup | None = None
        self._scopes: dict[Child, anyio.CancelScope] = {}
        self._launched = asyncio.Event()

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for child in self.children:
            counts[str(child.state)] = counts.get(str(child.state), 0) + 1
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"<Program {self.program.name}: {states}>"

    @property
    def name(self) -> str:
        return self.program.name

    async def run(self, dependencies: Sequence[ProgramRunner]) -> None:
        """Run the children's state machines; start them once the dependencies are RUNNING."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for child in self.children:
                self._launch(child)
            self._launched.set()
            if self.program.autostart:
                await self._wait_for(dependencies)
                self.start()

    def _launch(self, child: Child) -> None:
        assert self._tg is not None
        scope = self._scopes[child] = anyio.CancelScope()
        self._tg.start_soon(self._run_child, child, scope, name=f"child {child.name}")

    async def _run_child(self, child: Child, scope: anyio.CancelScope) -> None:
        with scope:
            await child.run()

    async def add_copy(self, program: Program, num: int, name: str) -> Child:
        """A new copy (reload: numprocs grew, or a copy replaced), its state machine running, not started."""
        await self._launched.wait()
        child = Child(program, num, name, self.runtime, self._on_change)
        self.children.append(child)
        self.children.sort(key=lambda c: c.num)
        self._launch(child)
        return child

    async def retire_copy(self, child: Child) -> None:
        """Stop one copy, wait until it is settled, and forget it (reload: removed or replaced)."""
        await self._launched.wait()
        child.stop()
        await child.wait_settled()
        self._scopes.pop(child).cancel()
        child.close_relays()
        self.children.remove(child)

    async def _wait_for(self, dependencies: Sequence[ProgramRunner]) -> None:
        for dep in dependencies:
            if not dep._running.is_set():
                log.info("%s: waiting for %s to be RUNNING", self.name, dep.name)
                await dep._running.wait()

    def start(self) -> None:
        if not self.runtime.shutdown.requested:
            for child in self.children:
                child.start()

    async def stop(self) -> None:
        """Stop every copy in parallel and wait until they are all settled."""
        for child in self.children:
            child.stop()
        for child in self.children:
            await child.wait_settled()

    def close(self) -> None:
        for child in self.children:
            child.close_relays()

    def send_signal(self, signum: int) -> None:
        for child in self.children:
            child.send_signal(signum)

    def _on_change(self, child: Child, old: State, new: State) -> None:
        if new is State.RUNNING and all(c.state is State.RUNNING for c in self.children):
            self._running.set()
        if self.program.critical and new in (State.FATAL, State.EXITED):
            self._critical_failed(child, new)

    def _critical_failed(self, child: Child, state: State) -> None:
        shutdown = self.runtime.shutdown
        if shutdown.requested:
            return
        status = child.last_exit
        code = status.shell_code if status is not None else 1
        if state is State.FATAL and code == 0:
            code = 1
        level = logging.ERROR if code else logging.INFO  # a critical job that succeeded is no error
        log.log(level, "%s is critical and went %s (%s): stopping everything", child.name, state, status)
        shutdown.request(f"critical program {child.name} {state}", exit_code=code)


def copies(program: Program) -> list[tuple[int, str]]:
    """(process_num, process name) of each copy of a program."""
    nums = range(program.numprocs_start, program.numprocs_start + program.numprocs)
    return list(zip(nums, program.process_names(), strict=True))
