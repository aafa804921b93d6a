"""The supervisor: every program, started by priority and dependency, stopped in reverse order."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
from anyio.abc import TaskGroup

from .._aio import race
from ..config import Program
from ..errors import UnknownProgram
from .child import Child
from .program import ProgramRunner
from .runtime import Runtime

log = logging.getLogger("asyncsup.supervisor")

KILL_GRACE = 5.0  # after SIGKILL a process can still take a moment (or hang in D state): bounded


class Supervisor:
    def __init__(self, programs: Mapping[str, Program], runtime: Runtime) -> None:
        self.runtime = runtime
        ordered = sorted(programs.values(), key=lambda p: (p.priority, p.name))
        self.programs = {p.name: ProgramRunner(p, runtime) for p in ordered}
        self._tg: TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}  # one per program: a reload removes programs
        self._running = anyio.Event()

    def __repr__(self) -> str:
        return f"<Supervisor {len(self.programs)} programs: {list(self.programs.values())}>"

    async def run(self) -> None:
        """Run until shutdown is requested, then stop everything in dependency order."""
        shutdown = self.runtime.shutdown
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for runner in self.programs.values():
                self._launch(runner)
            self._running.set()
            await shutdown.wait_requested()
            await race(self._stop_all, self._forced_then_grace)
            tg.cancel_scope.cancel()
        for runner in self.programs.values():
            runner.close()

    def _launch(self, runner: ProgramRunner) -> None:
        assert self._tg is not None
        deps = [self.programs[d] for d in runner.program.depends_on]
        scope = self._scopes[runner.name] = anyio.CancelScope()
        self._tg.start_soon(self._run_program, runner, deps, scope, name=f"program {runner.name}")

    async def _run_program(
        self, runner: ProgramRunner, deps: list[ProgramRunner], scope: anyio.CancelScope
    ) -> None:
        with scope:
            await runner.run(deps)

    async def add(self, program: Program) -> ProgramRunner:
        """Run a new program (reload): started after its dependencies, if autostart."""
        await self._running.wait()
        runner = ProgramRunner(program, self.runtime)
        self.programs[program.name] = runner
        ordered = sorted(self.programs.values(), key=lambda r: (r.program.priority, r.name))
        self.programs = {r.name: r for r in ordered}
        self._launch(runner)
        return runner

    async def remove(self, name: str) -> None:
        """Stop every copy of a program and forget it (reload). It shows as STOPPING meanwhile."""
        await self._running.wait()
        runner = self.programs[name]
        await runner.stop()
        self._scopes.pop(name).cancel()
        runner.close()
        del self.programs[name]

    async def _forced_then_grace(self) -> None:
        await self.runtime.shutdown.wait_forced()
        await anyio.sleep(KILL_GRACE)
        log.error("some processes did not exit after SIGKILL: %s", self)

    async def _stop_all(self) -> None:
        """Dependents first: a program stops once everything that depends on it has stopped.
        The others are signalled in reverse start order (last started, first stopped)."""
        dependents: dict[str, list[ProgramRunner]] = {name: [] for name in self.programs}
        for runner in self.programs.values():
            for dep in runner.program.depends_on:
                dependents[dep].append(runner)
        async with anyio.create_task_group() as tg:
            for runner in reversed(self.programs.values()):
                tg.start_soon(self._stop_after, runner, dependents[runner.name])

    async def _stop_after(self, runner: ProgramRunner, dependents: list[ProgramRunner]) -> None:
        for dependent in dependents:
            await dependent.stopped.wait()
        await runner.stop()
        runner.stopped.set()

    def select(self, spec: str) -> list[Child]:
        """The processes a name means: `all`, a program (`web` or `web:*`), or one process (`web:0`)."""
        if spec == "all":
            return [child for runner in self.programs.values() for child in runner.children]
        program = spec.removesuffix(":*")
        if program in self.programs:
            return list(self.programs[program].children)
        for runner in self.programs.values():
            for child in runner.children:
                if child.name == spec:
                    return [child]
        raise UnknownProgram(spec, self.programs)

    def forward_signal(self, signum: int) -> int:
        """Send a signal to every program that asked for it; returns how many programs got it."""
        count = 0
        for runner in self.programs.values():
            if signum in runner.program.forward_signals:
                runner.send_signal(signum)
                count += 1
        return count
