"""`asyncsup stats` and `asyncsup failed show|retry|remove`: looking at queues, and the failed ones.

Failed messages are envelopes in a failure transport, with the reason in their headers (retry.py's
failure_headers: error, error_type, traceback, attempts, origin, failed_at). `failed retry`
republishes a message to the transport it came from with its attempt count reset, then removes it
from the failure queue (in that order: a crash in between leaves a copy in both, never in none).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncsup.config import Config
from asyncsup.errors import ConfigError, DecodeError

# The consumer's machinery is imported when a command runs, not when `asyncsup run` builds its
# argument parser: a supervisor with no consumer should not pay for it in memory and start-up.
if TYPE_CHECKING:
    from asyncsup.consumer.envelope import Envelope
    from asyncsup.consumer.outcomes import Source
    from asyncsup.transports.base import Delivery, Transport

PAGE = 500
FAILURE_HEADERS = ("error", "error_type", "traceback", "attempts", "origin", "failed_at")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="the TOML config file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


# --- stats ---------------------------------------------------------------------------------------


def add_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("transports", nargs="*", help="transport names (default: all in the config)")
    _common(parser)
    parser.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    from asyncsup.consumer.commands import run_async
    from asyncsup.consumer.wiring import as_config

    config = as_config(args.config)
    names = args.transports or (sorted(config.transports) if config else [])
    if not names:
        raise ConfigError("command line", "transports", "name transports, or pass -c/--config FILE")
    return run_async(lambda: _stats(config, names, args.json))


async def _stats(config: Config | None, names: list[str], as_json: bool) -> int:
    from asyncsup.consumer.wiring import opened

    failure_names = _failure_names(config)
    rows = []
    async with opened(config, names) as sources:
        failed_from = await _failed_by_origin([s for s in sources if s.name in failure_names])
        for source in sources:
            counts = await source.transport.counts()
            rows.append(
                {
                    "transport": source.name,
                    "ready": counts.ready,
                    "in_flight": counts.in_flight,
                    "delayed": counts.delayed,
                    "failed": None if source.name in failure_names else failed_from.get(source.name, 0),
                    "role": "failure queue" if source.name in failure_names else "",
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ("transport", "ready", "in_flight", "delayed", "failed", "role"))
    return 0


def _failure_names(config: Config | None) -> set[str]:
    return config.failure_transports if config is not None else set()


async def _failed_by_origin(failure_sources: Sequence[Source]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for source in failure_sources:
        for delivery in await _browse_all(source.transport):
            counts[str(_envelope(delivery).headers.get("origin", "?"))] += 1
    return counts


# --- failed --------------------------------------------------------------------------------------


def add_failed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "retry", "remove"))
    parser.add_argument("ids", nargs="*", help="message ids (retry: default all)")
    parser.add_argument("--transport", help="the failure transport (default: the config's only one)")
    parser.add_argument("--max", type=int, default=50, help="show: at most this many (default 50)")
    _common(parser)
    parser.set_defaults(func=cmd_failed)


def cmd_failed(args: argparse.Namespace) -> int:
    from asyncsup.consumer.commands import run_async
    from asyncsup.consumer.wiring import as_config

    config = as_config(args.config)
    name = args.transport or _only_failure_transport(config)
    if args.action == "remove" and not args.ids:
        raise ConfigError("command line", "ids", "name the ids of the messages to remove")
    return run_async(lambda: _failed(config, name, args))


def _only_failure_transport(config: Config | None) -> str:
    names = sorted(_failure_names(config))
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ConfigError("command line", "--transport", f"name the failure transport (configured: {found})")
    return names[0]


async def _failed(config: Config | None, name: str, args: argparse.Namespace) -> int:
    from asyncsup.consumer.wiring import opened

    async with opened(config, [name]) as (source,):
        found = await _browse_all(source.transport)
        wanted = set(args.ids)
        if wanted:
            found = [d for d in found if _envelope(d).id in wanted or d.receipt in wanted]
            missing = wanted - {_envelope(d).id for d in found} - {d.receipt for d in found}
            if missing:
                print(f"not in {name}: {', '.join(sorted(missing))}", file=sys.stderr)
        if args.action == "show":
            _show(found[: args.max] if not wanted else found, detailed=bool(wanted), as_json=args.json)
        elif args.action == "retry":
            await _retry(config, source.transport, found)
        else:
            removed = await source.transport.remove([d.receipt for d in found])
            print(f"removed {removed} message(s) from {name}")
        return 1 if wanted and len(found) < len(wanted) else 0


def _row(delivery: Delivery) -> dict[str, Any]:
    env = _envelope(delivery)
    h = env.headers
    return {
        "id": env.id,
        "type": env.type,
        "attempts": h.get("attempts", ""),
        "failed_at": h.get("failed_at", ""),
        "origin": h.get("origin", ""),
        "error": h.get("error", ""),
    }


def _show(found: list[Delivery], *, detailed: bool, as_json: bool) -> None:
    if as_json:
        out = [_detail(d) if detailed else _row(d) for d in found]
        print(json.dumps(out, indent=2, ensure_ascii=False))
    elif detailed:
        for d in found:
            detail = _detail(d)
            traceback = detail["headers"].pop("traceback", "")
            print(json.dumps(detail, indent=2, ensure_ascii=False))
            if traceback:
                print(traceback)
    else:
        rows = [_row(d) for d in found]
        for row in rows:
            row["error"] = _cut(str(row["error"]).replace("\n", " "), 70)
        _print_table(rows, ("id", "type", "attempts", "failed_at", "origin", "error"))


def _detail(delivery: Delivery) -> dict[str, Any]:
    env = _envelope(delivery)
    return {"id": env.id, "type": env.type, "version": env.version, "headers": dict(env.headers),
            "body": env.body, "receipt": delivery.receipt}  # fmt: skip


async def _retry(config: Config | None, failures: Transport, found: list[Delivery]) -> None:
    from asyncsup.consumer.wiring import opened, transport_url

    """Back to the origin transport with a fresh attempt count, then out of the failure queue."""
    by_origin: dict[str, list[tuple[Delivery, bytes]]] = defaultdict(list)
    for d in found:
        env = _envelope(d)
        by_origin[str(env.headers.get("origin", ""))].append((d, _fresh_bytes(env)))
    for origin, items in by_origin.items():
        if not origin:
            print(f"skipped {len(items)} message(s) with no origin header", file=sys.stderr)
            continue
        transport_url(config, origin)  # an unknown origin fails before anything moves
        async with opened(config, [origin]) as (target,):
            await target.transport.publish([data for _, data in items])
        await failures.remove([d.receipt for d, _ in items])
        print(f"retried {len(items)} message(s) on {origin}")


def _fresh_bytes(env: Envelope) -> bytes:
    from asyncsup.consumer.envelope import Envelope, encode
    from asyncsup.consumer.outcomes import UNDECODABLE

    """The message as it was first sent: original bytes for undecodable ones, attempt 1 otherwise."""
    if env.type == UNDECODABLE:
        return base64.b64decode(env.headers.get("raw_base64", ""))
    headers = {k: v for k, v in env.headers.items() if k not in FAILURE_HEADERS}
    headers["attempt"] = 1
    headers.pop("error", None)
    headers["failed_before"] = int(env.headers.get("failed_before", 0)) + 1
    return encode(Envelope(env.id, env.type, env.body, env.version, headers))


async def _browse_all(transport: Transport) -> list[Delivery]:
    found: list[Delivery] = []
    while True:
        page = await transport.browse(PAGE, after=found[-1].receipt if found else None)
        found += page
        if len(page) < PAGE:
            return found


def _envelope(delivery: Delivery) -> Envelope:
    from asyncsup.consumer.envelope import Envelope, decode

    try:
        return decode(delivery.data)
    except DecodeError as exc:  # something else put bytes in the failure queue
        return Envelope(delivery.receipt, "<undecodable>", None, 1, {"error": str(exc)})


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    def text(value: Any) -> str:
        return "-" if value is None else str(value)

    header = [c.replace("_", " ") for c in columns]
    cells = [[text(r[c]) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    numeric = [all(row[i].isdigit() or row[i] == "-" for row in cells) for i in range(len(columns))]
    for line in [header, *cells]:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(line, widths, numeric, strict=True)]
        print("  ".join(parts).rstrip())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
