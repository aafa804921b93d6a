"""Reload for programs: what changed between two configs, and applying it without a full restart.

supervisord's `update` restarts a whole group for any change and re-starts programs an operator
stopped; HUP restarts everything (reference/SUPERVISORD.md, complaint 10). Here a program is compared
by its resolved settings: unchanged programs are not touched, a changed one is restarted one copy at
a time (the next copy only once the new one is RUNNING, so capacity never drops by more than one),
and a change of numprocs alone only adds or retires copies.

A copy that is STOPPED stays stopped: that is a copy an operator stopped (`ctl stop`), or one that
never started (autostart = false, or still waiting for its dependencies). Every other copy, EXITED and
FATAL ones included, runs with the new settings: a config change is the usual cure for a FATAL program.
If a new copy does not reach RUNNING, the roll stops there and the copies not yet replaced keep
running with their old settings: a broken command takes down one copy, not the program.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Program
from ..lifecycle import Shutdown
from .child import Child
from .program import ProgramRunner, copies
from .states import State

log = logging.getLogger("asyncsup.supervisor")


@dataclass(frozen=True)
class ProgramDiff:
    """Programs by name: in the new config only, in the old only, and in both with other settings."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # name -> keys

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff_programs(old: Mapping[str, Program], new: Mapping[str, Program]) -> ProgramDiff:
    changed = {name: changed_keys(old[name], new[name]) for name in old if name in new}
    return ProgramDiff(
        added=tuple(name for name in new if name not in old),
        removed=tuple(name for name in old if name not in new),
        changed={name: keys for name, keys in changed.items() if keys},
    )


def changed_keys(old: object, new: object) -> tuple[str, ...]:
    """The fields of two dataclasses of one type whose values differ, in field order."""
    assert dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new)
    return tuple(f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name))


async def roll(runner: ProgramRunner, new: Program, shutdown: Shutdown) -> list[str]:
    """Give a running program its new settings, one copy at a time; returns what happened, in words."""
    old = runner.program
    only_count = set(changed_keys(old, new)) <= {"numprocs"}
    was_on = any(child.state is not State.STOPPED for child in runner.children)
    runner.program = new
    wanted = dict(copies(new))
    done: list[str] = []
    for gone in [c for c in runner.children if c.num not in wanted]:
        await runner.retire_copy(gone)
        done.append(f"{gone.name} removed")
    for num, name in wanted.items():
        if shutdown.requested:
            done.append("stopped: asyncsup is shutting down")
            break
        current = next((c for c in runner.children if c.num == num), None)
        if current is not None and only_count and current.name == name:
            current.program = new  # numprocs is not something a running copy can see
            continue
        outcome = await _replace(runner, current, new, num, name, start=was_on)
        done.append(outcome)
        if outcome.endswith("(roll stopped)"):
            break
    return done


async def _replace(
    runner: ProgramRunner, child: Child | None, new: Program, num: int, name: str, *, start: bool
) -> str:
    """Retire `child` (if any) and put a copy with the new settings in its place."""
    if child is not None:
        start = child.state is not State.STOPPED
        await runner.retire_copy(child)
    fresh = await runner.add_copy(new, num, name)
    if not start:
        return f"{name} updated (left stopped)"
    state = await start_and_wait(fresh)
    if state is State.RUNNING:
        return f"{name} {'restarted' if child is not None else 'added'}"
    log.error("%s did not reach RUNNING with the new settings (%s): not restarting the other copies",
              name, fresh.last_exit or state)  # fmt: skip
    return f"{name} failed to start: {fresh.last_exit or state} (roll stopped)"


async def restart_one_by_one(runner: ProgramRunner, shutdown: Shutdown) -> list[str]:
    """Restart every copy that is not STOPPED, the next only once this one is RUNNING again (deploys).

    Stopping sends the program's stop signal: an `asyncsup consume` copy drains and exits 0."""
    done = []
    for child in list(runner.children):
        if shutdown.requested:
            done.append("stopped: asyncsup is shutting down")
            break
        if child.state is State.STOPPED:
            continue
        child.stop()
        await child.wait_settled()
        state = await start_and_wait(child)
        if state is not State.RUNNING:
            done.append(f"{child.name} failed to start: {child.last_exit or state} (roll stopped)")
            break
        done.append(f"{child.name} restarted")
    return done


async def start_and_wait(child: Child) -> State:
    """Start a settled copy and wait until it is RUNNING or failed to get there."""
    child.start()
    state = await child.wait_change()  # from a settled state, the first change is to STARTING
    while state is State.STARTING:
        state = await child.wait_change()
    return state
