"""`asyncsup send`, `consume`, `stop-workers`, `stats` and `failed`: argparse wiring and entry points.

Each command is `func(args) -> exit code`. `consume` is the process a supervisor runs N times
(``processes = N``): it handles SIGTERM/SIGINT itself (drain; a second signal forces), and exits 0
both after a shutdown and when a limit stops it, so the supervisor simply starts a fresh one.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from asyncsup.config import Config, Consumer
from asyncsup.consumer import admin
from asyncsup.errors import ConfigError
from asyncsup.lifecycle import Shutdown

if TYPE_CHECKING:
    from asyncsup.consumer.worker import Worker

# The consumer's machinery (envelope, transports, worker) is imported when a command runs, not
# when `asyncsup run` builds its parser: a supervisor without consumers should not pay for it.

log = logging.getLogger("asyncsup.consumer")

SubParsers = Any  # argparse's _SubParsersAction is private


def add_commands(subparsers: SubParsers, common: argparse.ArgumentParser | None = None) -> None:
    """Add send, consume, stop-workers, stats and failed to the top-level `asyncsup` parser."""
    parents = [common] if common is not None else []
    _add_send(subparsers.add_parser("send", parents=parents, help="send messages to a transport"))
    _add_consume(
        subparsers.add_parser("consume", parents=parents, help="consume transports with Python handlers")
    )
    _add_stop_workers(subparsers.add_parser(
        "stop-workers", parents=parents, help="consumers of a Redis transport restart, on every machine"
    ))  # fmt: skip
    admin.add_stats(subparsers.add_parser("stats", parents=parents, help="queue depths per transport"))
    admin.add_failed(
        subparsers.add_parser("failed", parents=parents, help="show, retry or remove failed messages")
    )
    _add_queue(subparsers.add_parser("queue", help="look at queued messages before a deploy"), parents)


def config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=os.environ.get("ASYNCSUP_CONFIG"),
        help="the TOML config file (names the transports; default: $ASYNCSUP_CONFIG)",
    )


# --- send ----------------------------------------------------------------------------------------


def _add_send(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("transport", help="a transport name from the config, or a URL")
    parser.add_argument("type", help="the message type, e.g. ResizeImage")
    parser.add_argument("body", help="the JSON body, or - to read one JSON body per line from stdin")
    parser.add_argument("--delay", type=_duration, default=0.0, help="deliver after this long (30s, 5m)")
    parser.add_argument(
        "--message-version", type=_positive, metavar="N",
        help="the body's version (default: the version the config's consumers of TRANSPORT handle "
        "TYPE at, read from their handler modules; 1 without a config)",
    )  # fmt: skip
    config_option(parser)
    parser.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    from asyncsup.consumer.wiring import as_config

    setup_logging(args)
    config = as_config(args.config)
    version = _send_version(config, args)
    return run_async(lambda: _send(config, args, version))


def _send_version(config: Config | None, args: argparse.Namespace) -> int:
    """--message-version, else the version the transport's consumers handle the type at, else 1."""
    from asyncsup.consumer.wiring import handler_version

    if args.message_version:
        return int(args.message_version)
    try:
        return handler_version(config, args.transport, args.type) or 1
    except ConfigError as exc:  # their handler modules do not import here: say how to do without
        hint = f" (read to learn the version of {args.type}; or pass --message-version N)"
        raise ConfigError(exc.file, exc.path, exc.problem + hint) from None


async def _send(config: Config | None, args: argparse.Namespace, version: int) -> int:
    from asyncsup.consumer.send import Sender, message_bytes

    bodies = _stdin_bodies() if args.body == "-" else iter([(1, args.body)])
    async with Sender(args.transport, config=config) as sender:
        data = (message_bytes(_json_body(n, text), type=args.type, version=version) for n, text in bodies)
        ids = await sender.publish_raw(data, delay=args.delay)
    if args.body == "-":
        print(f"sent {len(ids)} message(s) to {args.transport}", file=sys.stderr)
    else:
        print(ids[0])
    return 0


def _stdin_bodies() -> Any:
    for n, line in enumerate(sys.stdin, 1):
        if line.strip():
            yield n, line


def _json_body(line: int, text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        where = f"line {line}: " if line > 1 or text.endswith("\n") else ""
        raise ConfigError("send", "body", f"{where}not JSON: {exc}") from None


# --- consume -------------------------------------------------------------------------------------


def _add_consume(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("transports", nargs="*", help="transport names (or URLs) in priority order, highest first")
    add("--consumer", help="run this [consumers.NAME] from the config")
    add("--handlers", help="comma-separated modules with @handler functions")
    add("--concurrency", type=_positive, help="handlers running at once (default 16)")
    add("--prefetch", type=_non_negative, help="messages received ahead (default 0: auto, ~50 ms of work)")
    add("--failure-transport", help="where messages that cannot be handled go")
    add("--limit", type=_non_negative, help="stop after this many messages")
    add("--time-limit", type=_duration, help="stop after this long (1h, 30m)")
    add("--memory-limit", type=_size, help="stop when RSS reaches this (256MB)")
    add("--failure-limit", type=_non_negative, help="stop after this many failed messages")
    add("--lease", type=_duration, help="how long a received message stays hidden (default 30s)")
    config_option(parser)
    parser.set_defaults(func=cmd_consume)


SWITCH_INTERVAL = 20e-6  # seconds; see hand_over_gil_promptly()
GC_YOUNG_THRESHOLD = 20_000  # allocations between two collections of young objects (CPython: 700)


def tune_process_for_consuming() -> None:
    """What `asyncsup consume` sets for its whole process, which only consumes (both below)."""
    hand_over_gil_promptly()
    collect_young_objects_less_often()


def collect_young_objects_less_often() -> None:
    """Collect the youngest generation every 20,000 allocations instead of every 700.

    Each message allocates a few objects the cyclic collector tracks (its Delivery, its body, the
    handler's coroutine), and reference counting frees them: none is ever part of a cycle. Yet a
    young collection every 700 allocations scans them all: 6 % of a no-op consumer's CPU time
    (0.2 µs a message, benchmarks/README.md). The young generation stays small either way (a few MB
    at most); the older generations keep their own thresholds, counted in young collections.
    """
    young, middle, old = gc.get_threshold()
    if young:  # 0: the collector is off, and stays off
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


def hand_over_gil_promptly() -> None:
    """Let a thread that waits for the GIL have it within 20 µs instead of Python's 5 ms.

    A transport thread (SQLite) runs each SQLite step without the GIL, but needs it back for a
    moment between steps. While the loop works through a batch it holds the GIL, so at each such
    moment the thread waits for the interpreter's switch interval: with 5 ms the thread's work is
    in effect serialized with the loop's (CPU time = wall time); with 20 µs the next batch is
    claimed and the last one acked while the loop handles this one. The setting is process-wide,
    so `asyncsup consume` calls this (its process only consumes), not the Worker. A thread that
    never waits for the GIL (no transport thread, I/O-bound sync handlers) sees no difference.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


def cmd_consume(args: argparse.Namespace) -> int:
    from asyncsup.consumer.wiring import as_config, build_registry

    config = as_config(args.config)
    setup_logging(args, config)
    consumer = consumer_from_args(config, args)
    registry = build_registry(config, consumer)
    timeout = config.settings.shutdown_timeout if config is not None else 30.0
    tune_process_for_consuming()  # this process only consumes
    return run_async(lambda: _consume(config, consumer, registry, timeout))


def consumer_from_args(config: Config | None, args: argparse.Namespace) -> Consumer:
    """The [consumers.NAME] table (or defaults), with the command line's flags on top."""
    if args.consumer:
        if config is None:
            raise ConfigError("command line", "--consumer", "needs -c/--config FILE")
        from asyncsup.consumer.wiring import find_consumer

        base = find_consumer(config, args.consumer)
    elif config is not None and not args.transports and len(config.consumers) == 1:
        base = next(iter(config.consumers.values()))  # the only one: no need to name it
    else:
        base = _matching_consumer(config, args.transports) or Consumer("consume", (), ())
    changes: dict[str, Any] = {
        field: getattr(args, field) for field in _FLAG_FIELDS if getattr(args, field) is not None
    }
    if args.transports:
        changes["transports"] = tuple(args.transports)
    if args.handlers:
        changes["handlers"] = tuple(h.strip() for h in args.handlers.split(",") if h.strip())
    consumer = dataclasses.replace(base, **changes)
    if not consumer.transports:
        raise ConfigError("command line", "transports", "name at least one transport, or --consumer NAME")
    if not consumer.handlers:
        raise ConfigError("command line", "--handlers", "name the modules with your @handler functions")
    return consumer


_FLAG_FIELDS = ("concurrency", "prefetch", "failure_transport", "limit", "time_limit", "memory_limit",
                "failure_limit", "lease")  # fmt: skip


def _matching_consumer(config: Config | None, transports: list[str]) -> Consumer | None:
    """The one configured consumer of exactly these transports, whose handlers and policy apply."""
    if config is None or not transports:
        return None
    found = [c for c in config.consumers.values() if set(transports) <= set(c.transports)]
    return found[0] if len(found) == 1 else None


async def _consume(config: Config | None, consumer: Consumer, registry: Any, drain: float) -> int:
    from asyncsup.consumer.restart_mark import RestartMarks, redis_urls
    from asyncsup.consumer.wiring import opened_for
    from asyncsup.consumer.worker import Worker

    shutdown = Shutdown(drain)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, shutdown)
        tg.start_soon(shutdown.enforce_deadline)
        async with (
            opened_for(config, consumer) as (sources, failure),
            RestartMarks(redis_urls(config, consumer.transports)) as marks,
        ):
            stop_when = marks.wait_stop if marks else None  # the fleet's stop-workers
            worker = Worker(consumer, sources, registry, shutdown=shutdown,
                            failure=failure, stop_when=stop_when)  # fmt: skip
            await _run_reporting(worker)
        tg.cancel_scope.cancel()
    return 0  # a limit, a shutdown or stop-workers: either way the supervisor starts a fresh one


async def _run_reporting(worker: Worker) -> None:
    """Run the worker; under `asyncsup run` (processes = N), report its counters to the parent."""
    from asyncsup.consumer.reports import REPORT_TO, report_while_running, send_report

    report_to = os.environ.get(REPORT_TO)
    if not report_to:
        await worker.run()
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(report_while_running, report_to, worker)
        await worker.run()
        tg.cancel_scope.cancel()
    await send_report(report_to, worker)  # the final counters, acks flushed


async def _watch_signals(shutdown: Shutdown) -> None:
    """Only record: the worker sees the shutdown and drains; a second signal forces."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if shutdown.requested:
                log.warning("%s received again: stopping now", name)
            else:
                log.info("%s received: draining (send it again to stop now)", name)
            shutdown.request(f"{name} received")


# --- queue check ---------------------------------------------------------------------------------


def _add_queue(parser: argparse.ArgumentParser, parents: list[argparse.ArgumentParser]) -> None:
    actions = parser.add_subparsers(metavar="ACTION")
    parser.set_defaults(func=lambda args: _usage(parser))
    check = actions.add_parser(
        "check", parents=parents,
        help="would every queued message decode with the handler code on disk? (exit 0 yes, 1 no)",
    )  # fmt: skip
    check.add_argument("transports", nargs="*", help="transport names (default: every transport "
                       "a consumer reads, and the failure transports)")  # fmt: skip
    check.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    config_option(check)
    check.set_defaults(func=cmd_queue_check)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_queue_check(args: argparse.Namespace) -> int:
    """Browse the transports, check each message with the handler code on disk (check.py)."""
    from asyncsup.consumer.check import Checker, check_names, check_transports, print_reports
    from asyncsup.consumer.wiring import as_config

    setup_logging(args)
    config = as_config(args.config)
    if config is None:
        raise ConfigError("command line", "-c/--config", "queue check needs the config file")
    checker = Checker(config)
    names = check_names(config, args.transports) or checker.default_transports()
    if not names:
        raise ConfigError(str(config.file), "consumers", "no consumers: nothing to check messages against")

    async def main() -> int:
        reports = await check_transports(checker, names)
        print_reports(reports, as_json=args.json)
        return 1 if any(r.failed for r in reports) else 0

    return run_async(main)


# --- stop-workers --------------------------------------------------------------------------------


def _add_stop_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport", action="append", default=[],
        help="a Redis transport name from the config, or a redis:// URL (repeatable; default: "
        "every Redis transport of the config)",
    )  # fmt: skip
    config_option(parser)
    parser.set_defaults(func=cmd_stop_workers)


def cmd_stop_workers(args: argparse.Namespace) -> int:
    """Set the fleet restart mark (consumer/restart_mark.py) and say what it does."""
    from asyncsup.consumer.restart_mark import fleet_urls
    from asyncsup.consumer.wiring import as_config

    config = as_config(args.config)
    setup_logging(args, config)
    urls = fleet_urls(config, args.transport)
    return run_async(lambda: _stop_workers(urls))


async def _stop_workers(urls: list[str]) -> int:
    from asyncsup.consumer.restart_mark import POLL_INTERVAL, set_marks

    for mark in await set_marks(urls):
        print(f"{mark}; consumers restart after their current message (within {POLL_INTERVAL:g}s)")
    return 0


# --- shared --------------------------------------------------------------------------------------


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run on uvloop when installed (unless ASYNCSUP_LOOP=asyncio), else on asyncio."""
    if os.environ.get("ASYNCSUP_LOOP") == "asyncio":
        return anyio.run(main)
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return anyio.run(main)
    return anyio.run(main, backend_options={"use_uvloop": True})


def setup_logging(args: argparse.Namespace, config: Config | None = None) -> None:
    from asyncsup import logs

    configured = config.settings.log_level if config is not None else "info"
    level = logs.level_from_flags(configured, getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    fmt = getattr(args, "log_format", None) or (config.settings.log_format if config else "text")
    logs.setup_logging(logging.StreamHandler(sys.stderr), level=level, json_lines=fmt == "json")


def _duration(text: str) -> float:
    from asyncsup.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    from asyncsup.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value
