"""Reload and deploy: `ctl reread` / `ctl update` / SIGHUP, and `ctl stop-workers` / SIGUSR2.

`reread` reads the config file again and says what would change; `update` (and SIGHUP) applies it:
removed programs and consumers stop first, changed ones restart (programs one copy at a time,
supervisor/reload.py; consumers drain first, consumer/inline.py), added ones start last. A config
that does not load is refused with its error and nothing changes. Settings only read at startup
(the control socket, [http], the log format and level) are reported as needing a restart and keep
their running values. One line is logged per change.

`stop-workers` is the deploy: inline consumers drain and restart with their handler modules
imported anew, and programs with `restart_on_deploy = true` (consumers with `processes = N`
included) restart one copy at a time. Unlike messenger:stop-workers it answers only once it is
done, with what restarted (symfony #54037).

Signals only record a request here (an Intent); `run()`, in the root task group, does the work. One
change runs at a time: a second request waits for the first to finish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from ..config import Config, Consumer, Program, load_config
from ..errors import ConfigError, ControlError
from ..lifecycle import Shutdown
from ..supervisor.reload import changed_keys, diff_programs, restart_one_by_one, roll
from ..supervisor.runtime import Runtime
from ..supervisor.service import Supervisor

if TYPE_CHECKING:
    from ..consumer.inline import ConsumerDiff

log = logging.getLogger("asyncsup.reload")

BAD_CONFIG = "bad_config"  # the control protocol's error code for a config that does not load
RESTART_ONLY = ("control_socket", "log_format", "log_level")  # [asyncsup] keys read once at start


@dataclass(frozen=True)
class Change:
    """One difference between the running config and the file: `program web: changed (command)`."""

    kind: str  # "program", "consumer" or "setting"
    name: str
    what: str  # "added", "removed", "changed", "needs a restart", "applied"
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        keys = f" ({', '.join(self.keys)})" if self.keys else ""
        return f"{self.kind} {self.name}: {self.what}{keys}"


class Intent:
    """A request a signal handler records and a task carries out; requests made meanwhile merge."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def request(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


class Reloader:
    def __init__(
        self, config: Config, supervisor: Supervisor, consumers: Consumers, runtime: Runtime
    ) -> None:
        self.config = config
        self.started_with = config  # what the restart-only settings really are
        self.supervisor = supervisor
        self.consumers = consumers
        self.runtime = runtime
        self.shutdown: Shutdown = runtime.shutdown
        self.update_requested = Intent()
        self.deploy_requested = Intent()
        self.reopen_requested = Intent()
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        busy = "applying a change" if self._lock.locked() else "idle"
        return f"<Reloader {self.config.file}: {busy}>"

    async def run(self) -> None:
        """Carry out what signals asked for, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve, self.update_requested, "SIGHUP", self.update)
            tg.start_soon(self._serve, self.deploy_requested, "SIGUSR2", self.stop_workers)
            tg.start_soon(self._serve, self.reopen_requested, "SIGUSR1", self._reopen)

    async def _serve(self, intent: Intent, origin: str, action: Callable[[], Awaitable[object]]) -> None:
        while True:
            await intent.wait()
            try:
                await action()
            except (ConfigError, ControlError) as exc:  # already logged by the action
                log.debug("%s: %s", origin, exc)
            except Exception:  # a bug of ours must not take PID 1 down with it
                log.exception("%s: the change failed half-way", origin)

    async def _reopen(self) -> None:
        count = self.runtime.reopen_logs()
        log.info("reopening %d log file(s)", count)

    # -- reread / update ---------------------------------------------------------------------------

    def read(self) -> tuple[Config, list[Change]]:
        """The config file as it is now and how it differs; ControlError(bad_config) if it does not load."""
        try:
            new = load_config(self.config.file)
        except ConfigError as exc:
            raise _refused(exc) from None
        return new, self._diff(new)

    async def reread(self) -> list[Change]:
        return self.read()[1]

    async def update(self) -> list[tuple[Change, list[str]]]:
        """Apply the config file as it is now; returns each change and what it did."""
        async with self._lock:
            self._refuse_when_shutting_down()
            new, changes = self.read()
            self._check_handlers(new, changes)
            if not changes:
                log.info("reload: no changes in %s", new.file)
            done = [(change, await self._apply(change, new)) for change in _in_order(changes)]
            self.config = new
            self.consumers.config = new
            return done

    def _check_handlers(self, new: Config, changes: list[Change]) -> None:
        """Import the handlers of added and changed consumers before changing anything: a module
        that does not import refuses the whole reload, rather than leave it half applied."""
        for change in changes:
            if change.kind == "consumer" and change.what in ("added", "changed"):
                try:
                    self.consumers.check(new, new.consumers[change.name])
                except ConfigError as exc:
                    raise _refused(exc) from None

    def _diff(self, new: Config) -> list[Change]:
        programs = diff_programs(_programs(self.config), _programs(new))
        changed_programs = dict(programs.changed)
        # A consumer with processes = N is a program that only names it: its settings are its own.
        for name, keys in _diff_consumers(self.config, new, inline=False)[2].items():
            program = f"consumer-{name}"
            if program not in programs.added:
                changed_programs[program] = (*changed_programs.get(program, ()), *keys)
        changes = [Change("program", name, "added") for name in programs.added]
        changes += [Change("program", name, "removed") for name in programs.removed]
        changes += [Change("program", name, "changed", keys) for name, keys in changed_programs.items()]
        added, removed, changed = _diff_consumers(self.config, new, inline=True)
        changes += [Change("consumer", name, "added") for name in added]
        changes += [Change("consumer", name, "removed") for name in removed]
        changes += [Change("consumer", name, "changed", tuple(keys)) for name, keys in changed.items()]
        return changes + self._settings(new)

    def _settings(self, new: Config) -> list[Change]:
        old = self.started_with
        later = [k for k in RESTART_ONLY if getattr(old.settings, k) != getattr(new.settings, k)]
        changes = [Change("setting", f"asyncsup.{key}", "needs a restart") for key in later]
        http = changed_keys(old.http, new.http)
        changes += [Change("setting", f"http.{key}", "needs a restart") for key in http]
        if self.config.settings.shutdown_timeout != new.settings.shutdown_timeout:
            changes.append(Change("setting", "asyncsup.shutdown_timeout", "applied"))
        return changes

    async def _apply(self, change: Change, new: Config) -> list[str]:
        if self.shutdown.requested:  # the supervisor and the consumers no longer take new work
            return ["skipped: asyncsup is shutting down"]
        log.info("reload: %s", change)
        if change.kind == "program":
            return await self._apply_program(change, new)
        if change.kind == "consumer":
            return await self._apply_consumer(change, new)
        if change.what == "applied":
            self.shutdown.timeout = new.settings.shutdown_timeout
            return [f"now {new.settings.shutdown_timeout:g}s"]
        return ["kept its running value"]

    async def _apply_program(self, change: Change, new: Config) -> list[str]:
        if change.what == "removed":
            await self.supervisor.remove(change.name)
            return ["stopped"]
        program = _programs(new)[change.name]
        if change.what == "added":
            await self.supervisor.add(program)
            return ["started" if program.autostart else "added (autostart = false: not started)"]
        return await roll(self.supervisor.programs[change.name], program, self.shutdown)

    async def _apply_consumer(self, change: Change, new: Config) -> list[str]:
        if change.what == "removed":
            await self.consumers.remove(change.name)
            return ["drained and stopped"]
        consumer = new.consumers[change.name]
        if change.what == "added":
            await self.consumers.add(new, consumer)
            return ["started"]
        return [await self.consumers.replace(new, consumer)]

    # -- stop-workers ------------------------------------------------------------------------------

    async def stop_workers(self) -> list[str]:
        """Restart inline consumers with fresh handler code and restart_on_deploy programs; what restarted."""
        async with self._lock:
            self._refuse_when_shutting_down()
            log.info("stop-workers: restarting inline consumers and restart_on_deploy programs")
            try:
                done = await self.consumers.restart_all()
            except ConfigError as exc:
                log.error("stop-workers refused, nothing restarted: %s", exc)
                raise ControlError(f"the new handler code does not import: {exc}", BAD_CONFIG) from None
            for runner in list(self.supervisor.programs.values()):
                if runner.program.restart_on_deploy:
                    done += await restart_one_by_one(runner, self.shutdown)
            for line in done:
                log.info("stop-workers: %s", line)
            return done

    def _refuse_when_shutting_down(self) -> None:
        if self.shutdown.requested:
            raise ControlError(f"asyncsup is shutting down ({self.shutdown.reason})", "shutting_down")


class Consumers(Protocol):
    """What the Reloader needs of the inline consumers (consumer/inline.py's InlineConsumers, which
    is imported only when there are consumers: `asyncsup run` alone does not load the consumer code)."""

    config: Config

    def check(self, config: Config, consumer: Consumer) -> None: ...
    async def add(self, config: Config, consumer: Consumer) -> None: ...
    async def remove(self, name: str) -> None: ...
    async def replace(self, config: Config, consumer: Consumer) -> str: ...
    async def restart_all(self) -> list[str]: ...


def _diff_consumers(old: Config, new: Config, *, inline: bool) -> ConsumerDiff:
    from ..consumer.inline import diff_consumers

    return diff_consumers(old, new, inline=inline)


def _refused(exc: ConfigError) -> ControlError:
    log.error("reload refused, nothing changed: %s", exc)
    return ControlError(f"the config has an error, nothing changed: {exc}", BAD_CONFIG)


def _programs(config: Config) -> dict[str, Program]:
    from ..app import all_programs

    return all_programs(config)


def _in_order(changes: list[Change]) -> list[Change]:
    """Removed first (frees what they held), then changed, then added (they may need the others)."""
    rank = {"removed": 0, "changed": 1, "added": 2}
    return sorted(changes, key=lambda c: rank.get(c.what, 3))
