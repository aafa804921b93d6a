"""`asyncsup queue check`: before a deploy, would the queued messages still decode with this code?

For every message in the named transports (default: every transport a consumer of the config reads,
then the failure transports), read with ``browse`` page by page (nothing is received, leased or
changed): decode the envelope, find its handler in the handler modules the config names, as they are
on disk now (the code about to be deployed), run the upcasters and decode the body, the way the
worker would. A message ok for one consumer of its transport but not for another would fail.

A failure queue's message is checked as `asyncsup failed retry` would send it back: against the
consumers of its origin transport (an undecodable one by its original bytes).

Paging is by offset: on a queue that consumers work on meanwhile, an ack shifts the rest up a
page, so a live queue is checked nearly, not exactly; the report says how many were checked. Only
one page is held at a time, so memory stays flat however long the queue is.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncsup.config import Config
from asyncsup.consumer.envelope import Envelope, decode
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.outcomes import UNDECODABLE, Source
from asyncsup.consumer.retry import describe
from asyncsup.consumer.wiring import build_registry, consumers_of, opened
from asyncsup.errors import ConfigError, DecodeError, did_you_mean

# Messages per browse() call. Each page starts after the last receipt of the one before, so it costs
# its own size at any depth; on Redis a page is one script, which holds the server while it runs.
PAGE = 1000
MAX_REASONS = 3  # distinct reasons kept per message type; the others are only counted
MAX_EXAMPLES = 3  # message ids kept per reason
UNDECODABLE_TYPE = "<undecodable>"

Registries = Sequence[tuple[str, HandlerRegistry]]  # (consumer name, its registry)


@dataclass
class Reason:
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class TypeReport:
    """What the check found for one message type in one transport."""

    ok: int = 0
    failed: int = 0
    versions: Counter[int] = field(default_factory=Counter)
    reasons: dict[str, Reason] = field(default_factory=dict)
    other_reasons: int = 0  # failures whose reason is not among the first MAX_REASONS

    def add(self, message_id: str, version: int | None, reason: str | None) -> None:
        if version is not None:
            self.versions[version] += 1
        if reason is None:
            self.ok += 1
            return
        self.failed += 1
        kept = self.reasons.get(reason)
        if kept is None and len(self.reasons) >= MAX_REASONS:
            self.other_reasons += 1
            return
        kept = self.reasons.setdefault(reason, Reason())
        kept.count += 1
        if len(kept.examples) < MAX_EXAMPLES:
            kept.examples.append(message_id)

    def as_json(self, message_type: str) -> dict[str, Any]:
        return {
            "type": message_type,
            "checked": self.ok + self.failed,
            "ok": self.ok,
            "would_fail": self.failed,
            "versions": {str(v): n for v, n in sorted(self.versions.items())},
            "reasons": [
                {"reason": reason, "count": kept.count, "examples": kept.examples}
                for reason, kept in self.reasons.items()
            ],
            "other_reasons": self.other_reasons,
        }


@dataclass
class TransportReport:
    name: str
    role: str
    types: dict[str, TypeReport] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        return sum(t.ok + t.failed for t in self.types.values())

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.types.values())

    def add(self, message_type: str, message_id: str, version: int | None, reason: str | None) -> None:
        self.types.setdefault(message_type, TypeReport()).add(message_id, version, reason)

    def as_json(self) -> dict[str, Any]:
        types = [t.as_json(name) for name, t in sorted(self.types.items())]
        return {"transport": self.name, "role": self.role, "checked": self.checked,
                "ok": self.checked - self.failed, "would_fail": self.failed, "types": types}  # fmt: skip


class Checker:
    """The config's consumers and their registries (imported once each), and the verdicts."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._registries: dict[str, HandlerRegistry] = {}
        self.failure_names = config.failure_transports

    def default_transports(self) -> list[str]:
        """Every transport a consumer reads, in config order, then the failure transports."""
        names = [t for c in self.config.consumers.values() for t in c.transports]
        return list(dict.fromkeys([*names, *sorted(self.failure_names)]))

    def registries(self, transport: str) -> Registries:
        found = []
        for consumer in consumers_of(self.config, transport):
            if consumer.name not in self._registries:
                self._registries[consumer.name] = build_registry(self.config, consumer)
            found.append((consumer.name, self._registries[consumer.name]))
        return found

    def role(self, transport: str) -> str:
        readers = [name for name, _ in self.registries(transport)]
        if readers:
            return "read by " + ", ".join(readers)
        if transport in self.failure_names:
            return "failure queue"
        raise ConfigError(
            str(self.config.file), "transports",
            f"transport {transport!r} is read by no consumer and is no failure transport: "
            "there are no handlers to check its messages against",
        )  # fmt: skip

    def check(self, data: bytes, registries: Registries | None) -> tuple[str, str, int | None, str | None]:
        """(type, id, version, why it would fail or None); registries None: a failure queue's."""
        try:
            envelope = decode(data)
        except DecodeError as exc:
            return UNDECODABLE_TYPE, "", None, str(exc)
        if registries is None:
            return self._check_failed(envelope)
        return envelope.type, envelope.id, envelope.version, _verdict(envelope, registries)

    def _check_failed(self, envelope: Envelope) -> tuple[str, str, int | None, str | None]:
        """A failure queue's message, as `failed retry` would send it back to its origin."""
        origin = str(envelope.headers.get("origin", ""))
        registries = self.registries(origin) if origin in self.config.transports else []
        if not registries:
            return envelope.type, envelope.id, envelope.version, f"no consumer reads its origin {origin!r}"
        if envelope.type == UNDECODABLE:
            try:
                raw = base64.b64decode(str(envelope.headers.get("raw_base64", "")), validate=True)
            except ValueError:  # binascii.Error: the header was edited, or written by something else
                return UNDECODABLE_TYPE, envelope.id, None, "its raw_base64 header is not base64"
            kind, _, version, reason = self.check(raw, registries)
            return kind, envelope.id, version, reason
        return envelope.type, envelope.id, envelope.version, _verdict(envelope, registries)


def _verdict(envelope: Envelope, registries: Registries) -> str | None:
    """Why the worker would fail this message (with which consumer, when several read it), or None."""
    for name, registry in registries:
        try:
            registry.decode_body(envelope)
        except Exception as exc:  # whatever the worker would settle as a failure
            return f"{name}: {describe(exc)}" if len(registries) > 1 else describe(exc)
    return None


async def check_transports(checker: Checker, names: Sequence[str]) -> list[TransportReport]:
    """Browse every named transport to its end, checking each message; nothing is changed."""
    roles = {name: checker.role(name) for name in names}  # a bad name fails before anything opens
    reports = []
    async with opened(checker.config, names) as sources:
        for source in sources:
            report = TransportReport(source.name, roles[source.name])
            failure_queue = roles[source.name] == "failure queue"
            registries = None if failure_queue else checker.registries(source.name)
            await _check_source(checker, source, registries, report)
            reports.append(report)
    return reports


async def _check_source(
    checker: Checker, source: Source, registries: Registries | None, report: TransportReport
) -> None:
    after: str | None = None
    while True:
        page = await source.transport.browse(PAGE, after=after)
        for delivery in page:
            kind, message_id, version, reason = checker.check(delivery.data, registries)
            report.add(kind, message_id or delivery.receipt, version, reason)
        if len(page) < PAGE:
            return
        after = page[-1].receipt


def check_names(config: Config, names: Iterable[str]) -> list[str]:
    """The transports asked for, each a name of the config (a typo is a usage error, exit 2)."""
    names = list(names)
    for name in names:
        if name not in config.transports:
            hint = did_you_mean(name, config.transports)
            known = ", ".join(sorted(config.transports))
            problem = f"no transport named {name!r}{hint} (known: {known})"
            raise ConfigError(str(config.file), "transports", problem)
    return names


# --- output --------------------------------------------------------------------------------------


def print_reports(reports: Sequence[TransportReport], *, as_json: bool) -> None:
    checked = sum(r.checked for r in reports)
    failed = sum(r.failed for r in reports)
    if as_json:
        out = {"ok": failed == 0, "checked": checked, "would_fail": failed,
               "transports": [r.as_json() for r in reports]}  # fmt: skip
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for report in reports:
        _print_transport(report)
    where = f"in {len(reports)} transport(s)"
    if failed:
        print(f"{failed} of {checked} message(s) {where} would not decode with this code")
    else:
        print(f"all {checked} message(s) {where} would decode with this code")


def _print_transport(report: TransportReport) -> None:
    ok = report.checked - report.failed
    print(f"{report.name} ({report.role}): {report.checked} checked, {ok} ok, {report.failed} would fail")
    for name, t in sorted(report.types.items()):
        versions = ", ".join(f"v{v}: {n}" for v, n in sorted(t.versions.items()))
        shown = f" ({versions})" if versions else ""
        print(f"  {name}{shown}: {t.ok} ok, {t.failed} would fail")
        for reason, kept in t.reasons.items():
            print(f"    {kept.count} x {reason}")
            print(f"      e.g. {', '.join(kept.examples)}")
        if t.other_reasons:
            print(f"    {t.other_reasons} more with other reasons")
