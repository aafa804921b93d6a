"""Inline consumers that a reload and a deploy can change while asyncsup runs.

Each inline consumer lives in a slot: a loop that runs one Worker at a time. A reload or a deploy
asks a slot to drain and go on with other settings or other handler code: the current Worker stops
intake, gives prefetched messages back, lets its running handlers finish and ack, and only then
the next Worker starts. So a message is never handled by the old and the new code at once, and
none is lost: released messages are received again by the next Worker.

Fresh handler code (`ctl stop-workers`, SIGUSR2) is a fresh import, not `importlib.reload`:
reload re-executes a module inside the old module object, so a handler deleted from the file stays
registered, the helper modules it imports (app.models) keep their old code, and a reload that fails
half-way leaves a half-new module under the running consumer. Instead the application's modules
(those under the config's folder or the working directory, not asyncsup's nor site-packages') are
dropped from sys.modules and the handler modules imported again into new module objects. The old
Worker keeps its old functions while it drains; if the new import fails, the old modules are put
back, the consumer keeps running its old code and the error is reported. Installed packages are not
re-imported: a deploy that changes dependencies needs a new process (processes = N, or a restart).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from asyncsup._aio import race
from asyncsup.config import Config, Consumer
from asyncsup.consumer.reports import ChildReports, ConsumerTotals
from asyncsup.consumer.statistics import DURATION_BUCKETS, Durations, TransportTotals
from asyncsup.errors import AsyncsupError, ConfigError
from asyncsup.lifecycle import Shutdown
from asyncsup.supervisor.reload import changed_keys

if TYPE_CHECKING:
    from asyncsup.consumer.handlers import HandlerRegistry
    from asyncsup.consumer.outcomes import Source
    from asyncsup.consumer.worker import Worker
    from asyncsup.control.metrics import Exposition
    from asyncsup.transports.base import Transport

log = logging.getLogger("asyncsup.consumer")

CRASH_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restarting a consumer that failed
METRICS = (  # (field, metric, type, help): counters are summed over a consumer's Workers
    ("handled", "messages_handled_total", "counter", "Messages handled and acked."),
    ("failed", "messages_failed_total", "counter", "Messages sent to the failure queue (or dropped)."),
    ("retried", "messages_retried_total", "counter", "Messages requeued for another attempt."),
    ("released", "messages_released_total", "counter", "Prefetched messages given back unstarted."),
    ("in_flight", "in_flight", "gauge", "Messages being handled, or received and waiting for a worker."),
    ("restarts", "restarts_total", "counter", "Restarts: limits, reloads, deploys, failures."),
)


@dataclass
class _Slot:
    consumer: Consumer
    registry: HandlerRegistry
    worker: Worker | None = None
    sources: Sequence[Source] = ()
    next: tuple[Consumer, HandlerRegistry, anyio.Event] | None = None  # drain, then go on with these
    retired: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)  # cuts a crash backoff short
    done: anyio.Event = field(default_factory=anyio.Event)
    totals: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # of finished Workers
    durations: Durations = field(default_factory=Durations)  # of every Worker, shared
    per_transport: TransportTotals = field(default_factory=TransportTotals)  # likewise
    restarts: int = 0

    def request(self, reason: str) -> None:
        self.wake.set()
        if self.worker is not None:
            self.worker.stop(reason)


class InlineConsumers:
    """Every inline consumer (processes = 0) of `asyncsup run`, changeable while it runs."""

    def __init__(self, config: Config, shutdown: Shutdown) -> None:
        self.config = config
        self.shutdown = shutdown
        self.slots: dict[str, _Slot] = {}
        self.reports = ChildReports()  # from the `processes = N` consumers' children
        self._tg: TaskGroup | None = None
        self._running = anyio.Event()
        self._changing = anyio.Lock()  # ctl's and the fleet's stop-workers must not interleave

    def __repr__(self) -> str:
        states = ", ".join(f"{n}: {s.worker!r}" for n, s in self.slots.items()) or "none"
        return f"<InlineConsumers {states}>"

    async def run(self) -> None:
        """Run until the shutdown has drained every consumer. Import errors fail before any start."""
        inline = [c for c in self.config.consumers.values() if c.processes == 0]
        registries = [_build(self.config, c) for c in inline]
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for consumer, registry in zip(inline, registries, strict=True):
                self._launch(consumer, registry)
            self._running.set()
            # a reload may add consumers until the shutdown; the fleet's stop-workers restarts them
            await race(self.shutdown.wait_requested, lambda: self._watch_marks(inline))

    async def _watch_marks(self, inline: Sequence[Consumer]) -> None:
        """The fleet's stop-workers, on the Redis servers of the inline consumers (restart_mark.py)."""
        if not inline:  # and `asyncsup run` alone does not import the consumer's machinery
            await anyio.sleep_forever()
        from asyncsup.consumer.restart_mark import RestartMarks, redis_urls, restart_on_marks

        try:
            marks = RestartMarks(redis_urls(self.config, [n for c in inline for n in c.transports]))
        except AsyncsupError as exc:  # a bad URL: the consumer using it says so too, and retries
            log.error("stop-workers: cannot watch the fleet restart mark: %s", exc)
            await anyio.sleep_forever()
        async with marks:
            await restart_on_marks(marks, self)

    def _launch(self, consumer: Consumer, registry: HandlerRegistry) -> None:
        assert self._tg is not None
        slot = self.slots[consumer.name] = _Slot(consumer, registry)
        self._tg.start_soon(self._run_slot, slot, name=f"consumer {consumer.name}")

    # -- changes (reload, deploy) ------------------------------------------------------------------

    def check(self, config: Config, consumer: Consumer) -> None:
        """ConfigError if the consumer's handler modules do not import (before a reload applies)."""
        _build(config, consumer)

    async def add(self, config: Config, consumer: Consumer) -> None:
        await self._running.wait()
        registry = _build(config, consumer)
        self.config = config
        self._launch(consumer, registry)

    async def remove(self, name: str) -> None:
        """Drain the consumer and forget it."""
        slot = self.slots[name]
        slot.retired = True
        slot.request("removed from the config")
        await slot.done.wait()
        del self.slots[name]

    async def replace(self, config: Config, consumer: Consumer, *, fresh_code: bool = False) -> str:
        """Drain the consumer, then run it with these settings (and freshly imported handlers)."""
        async with self._changing:
            registry = _build(config, consumer, fresh=fresh_code)
            self.config = config
            return await self._restart(self.slots[consumer.name], consumer, registry, fresh_code)

    async def restart_all(self) -> list[str]:
        """`stop-workers`: every consumer drains and restarts with its handler modules imported anew.
        The new code is imported first, for all of them: if it fails, nothing is restarted."""
        async with self._changing:
            return await self._restart_all()

    async def _restart_all(self) -> list[str]:
        slots = list(self.slots.values())
        with _fresh_app_modules(self.config):
            registries = [_build_new(self.config, s.consumer) for s in slots]
        done: list[str] = []

        async def one(slot: _Slot, registry: HandlerRegistry) -> None:
            done.append(await self._restart(slot, slot.consumer, registry, True))

        async with anyio.create_task_group() as tg:
            for slot, registry in zip(slots, registries, strict=True):
                tg.start_soon(one, slot, registry)
        return sorted(done)

    async def _restart(self, slot: _Slot, consumer: Consumer, registry: HandlerRegistry, fresh: bool) -> str:
        started = anyio.Event()
        slot.next = (consumer, registry, started)
        why = "stop-workers: restarting with fresh handler code" if fresh else "its config changed"
        slot.request(why)
        await race(started.wait, slot.done.wait)
        if not started.is_set():
            return f"consumer {consumer.name}: stopped before it could restart"
        return f"consumer {consumer.name}: drained and restarted" + (" with fresh code" if fresh else "")

    # -- the slot's loop -------------------------------------------------------------------------------

    async def _run_slot(self, slot: _Slot) -> None:
        try:
            await self._cycle(slot)
        finally:
            slot.worker, slot.sources = None, ()
            slot.done.set()

    async def _cycle(self, slot: _Slot) -> None:
        """One consumer, restarted in-process after a limit, a change, or (with a backoff) a failure."""
        crashes = 0
        while not self.shutdown.requested and not slot.retired:
            started = self._adopt_next(slot)
            try:
                stopped_for = await self._run_once(slot, started)
            except AsyncsupError as exc:  # a transport down: keep the supervisor up, retry
                delay = CRASH_BACKOFF[min(crashes, len(CRASH_BACKOFF) - 1)]
                crashes += 1
                log.error("consumer %s failed: %s; restarting in %gs", slot.consumer.name, exc, delay)
                await self._backoff(slot, delay)
                continue
            crashes = 0
            if stopped_for is None:
                return
            slot.restarts += 1
            _log_restart(slot.consumer, stopped_for)
            if stopped_for.startswith("memory limit"):  # it would trip again at once, forever
                slot.consumer = dataclasses.replace(slot.consumer, memory_limit=0)

    def _adopt_next(self, slot: _Slot) -> anyio.Event | None:
        if slot.next is None:
            return None
        slot.consumer, slot.registry, started = slot.next
        slot.next = None
        return started

    async def _backoff(self, slot: _Slot, delay: float) -> None:
        slot.wake = anyio.Event()
        with anyio.move_on_after(delay):
            await race(self.shutdown.wait_requested, slot.wake.wait)

    async def _run_once(self, slot: _Slot, started: anyio.Event | None) -> str | None:
        """Run one Worker; None once it stopped for good (shutdown, removal), else why to go on."""
        from asyncsup.consumer.wiring import opened_for
        from asyncsup.consumer.worker import Worker

        consumer = slot.consumer
        async with opened_for(self.config, consumer) as (own, failure):
            worker = Worker(
                consumer, own, slot.registry, shutdown=self.shutdown, failure=failure,
                durations=slot.durations, totals=slot.per_transport,
            )
            slot.worker, slot.sources = worker, own
            if slot.next is not None or slot.retired:  # asked while we were opening the transports
                worker.stop("restart requested" if slot.next is not None else "removed from the config")
            if started is not None:
                started.set()
            result = await worker.run()
            slot.worker, slot.sources = None, ()
        s = result.statistics
        for i, value in enumerate((s.handled, s.failed, s.retried, s.released)):
            slot.totals[i] += value
        if slot.next is not None and not slot.retired:
            return "restart requested"
        return result.reason if result.limit_reached else None

    # -- statistics ------------------------------------------------------------------------------------

    def statistics(self) -> dict[str, ConsumerTotals]:
        """Every consumer: inline ones from their Workers, `processes = N` ones from their reports."""
        inline = {name: _statistics(slot) for name, slot in self.slots.items()}
        return {**self.reports.statistics(), **inline}

    def transports_in_use(self) -> dict[str, Transport]:
        """The transports the inline consumers have open now, by name (for queue depths)."""
        return {source.name: source.transport for slot in self.slots.values() for source in slot.sources}

    def write_metrics(self, out: Exposition) -> None:
        """Counters per consumer, summed over its Workers (a restart does not reset them)."""
        stats = self.statistics()
        for key, metric, kind, help_text in METRICS:
            samples = [({"consumer": name}, getattr(s, key)) for name, s in stats.items()]
            out.family(f"asyncsup_consumer_{metric}", kind, help_text, samples)
        for index, what in enumerate(TransportTotals.KINDS):
            per_transport = [
                ({"consumer": name, "transport": transport}, counts[index])
                for name, slot in self.slots.items()
                for transport, counts in slot.per_transport.by_transport.items()
            ]
            out.family(
                f"asyncsup_transport_messages_{what}_total", "counter",
                f"Messages {what} per consumer and transport.", per_transport,
            )
        series = [({"consumer": name}, slot.durations) for name, slot in self.slots.items()]
        out.histogram_family(
            "asyncsup_consumer_handler_duration_seconds", "How long handlers took (those that returned).",
            DURATION_BUCKETS, [(labels, d.cumulative(), d.total) for labels, d in series],
        )


def _statistics(slot: _Slot) -> ConsumerTotals:
    handled, failed, retried, released = slot.totals
    in_flight = 0
    if slot.worker is not None:
        now = slot.worker.statistics()
        handled, failed, retried = handled + now.handled, failed + now.failed, retried + now.retried
        released += now.released
        in_flight = now.running + now.buffered
    return ConsumerTotals(handled, failed, retried, released, in_flight, slot.restarts)


ConsumerDiff = tuple[list[str], list[str], dict[str, list[str]]]


def diff_consumers(old: Config, new: Config, *, inline: bool) -> ConsumerDiff:
    """Consumers added, removed, and changed (name -> what changed), inline ones or the others.
    A consumer also changes when the URL of one of its transports does."""
    before, after = _of_kind(old, inline), _of_kind(new, inline)
    changed = {}
    for name in before.keys() & after.keys():
        keys = list(changed_keys(before[name], after[name]))
        urls = [t for t in after[name].transports_used if old.transports.get(t) != new.transports.get(t)]
        keys += [f"transport {t}" for t in urls]
        if keys:
            changed[name] = keys
    added = [name for name in after if name not in before]
    return added, [name for name in before if name not in after], changed


def _of_kind(config: Config, inline: bool) -> dict[str, Consumer]:
    return {name: c for name, c in config.consumers.items() if (c.processes == 0) == inline}


def _build(config: Config, consumer: Consumer, *, fresh: bool = False) -> HandlerRegistry:
    from asyncsup.consumer.wiring import build_registry

    if not fresh:
        return build_registry(config, consumer)
    with _fresh_app_modules(config):
        return _build_new(config, consumer)


def _build_new(config: Config, consumer: Consumer) -> HandlerRegistry:
    """Like _build, and any error of the new code (a SyntaxError, a NameError at import) is a
    ConfigError: a deploy that does not import is refused and the old code runs on."""
    from asyncsup.consumer.wiring import build_registry

    try:
        return build_registry(config, consumer)
    except ConfigError:
        raise
    except Exception as exc:
        where = f"consumers.{consumer.name}.handlers"
        raise ConfigError(str(config.file), where, f"the handler code failed to import: {exc!r}") from exc


class _fresh_app_modules:  # a context manager: named like one
    """Within the block, imports of the application's modules run their code anew; on an error
    the modules as they were are put back."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.saved: dict[str, object] = {}

    def __enter__(self) -> None:
        importlib.invalidate_caches()  # files written by the deploy since the last import
        folders = _app_folders(self.config)
        for name, module in list(sys.modules.items()):
            if _is_app_module(module, folders):
                self.saved[name] = sys.modules.pop(name)
                # A .pyc is trusted when the source has the same size and mtime in whole seconds:
                # a quick edit (VERSION = 1 -> 2) would run the old bytecode.
                cached = getattr(module, "__cached__", None)
                if isinstance(cached, str):
                    with contextlib.suppress(OSError):
                        os.unlink(cached)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if exc is not None:
            sys.modules.update(self.saved)  # type: ignore[arg-type]


def _app_folders(config: Config) -> list[str]:
    return [os.path.join(os.path.abspath(p), "") for p in (Path(config.file).parent, Path.cwd())]


def _is_app_module(module: object, folders: Sequence[str]) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False
    file = os.path.abspath(file)
    return any(file.startswith(f) for f in folders) and not any(file.startswith(f) for f in _not_app())


def _not_app() -> Iterator[str]:
    """Folders whose modules are never re-imported: asyncsup itself, the interpreter, installed packages."""
    yield os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        yield os.path.join(os.path.abspath(prefix), "")
    for path in sys.path:
        if "site-packages" in path or "dist-packages" in path:
            yield os.path.join(os.path.abspath(path), "")


def _log_restart(consumer: Consumer, reason: str) -> None:
    if reason.startswith("memory limit"):
        log.warning(
            "consumer %s: %s; restarting it in-process, which does not give memory back to the "
            "OS, so its memory_limit is ignored from now on: set processes = 1 (or more) under "
            "[consumers.%s] to run it as a child process that is replaced instead",
            consumer.name, reason, consumer.name,
        )  # fmt: skip
    else:
        log.info("consumer %s: %s; restarting it in-process", consumer.name, reason)
