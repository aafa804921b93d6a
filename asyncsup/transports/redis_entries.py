"""From stream entries to deliveries: what the Redis transport hands out, parsed once.

A delivery's receipt is ``<entry id>:<token>`` (the token is the PEL's delivery counter, see
redis_scripts.py), its count the token + the deliveries the entry carries (field ``d``). Browsed
entries get ``<entry id>:0``: they hold no lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncsup.transports.base import Delivery
from asyncsup.transports.redis_interop import FIELD, SYMFONY_FIELD, foreign


@dataclass(slots=True, repr=False)
class Leased(Delivery):
    """A received delivery, with its entry id and the reclaim epoch its receive saw (with them,
    an ack can skip the check of its receipt)."""

    entry_id: bytes = b""
    epoch: int = -1


def fresh(reply: Any, epoch: int, queue: str, symfony: bool) -> list[Delivery]:
    """Deliveries of an XREADGROUP reply (entries read for the first time): the hot path."""
    if not reply:
        return []
    entries = next(iter(reply.values())) if type(reply) is dict else reply[0][1]  # RESP3 : RESP2
    out = list[Delivery]()
    for entry_id, fields in entries:
        if len(fields) == 2 and fields[0] == FIELD:  # ours, never requeued: delivery 1
            out.append(Leased(entry_id.decode() + ":1", fields[1], 1, queue, entry_id, epoch))
        else:
            out.append(entry(entry_id, fields, 1, epoch, queue, symfony))
    return out


def entry(entry_id: bytes, fields: list[bytes], token: int, epoch: int, queue: str, symfony: bool) -> Leased:
    """A delivery of any entry: its count is the token + the deliveries it carries (d)."""
    eid, named = entry_id.decode(), dict(zip(fields[::2], fields[1::2], strict=False))
    carried = named.get(b"d", b"0")
    deliveries = token + (int(carried) if carried.isdigit() else 0)
    if FIELD in named:
        data = named[FIELD]
    elif SYMFONY_FIELD in named:
        data = foreign(1, named[SYMFONY_FIELD], eid, symfony)
    else:
        data = foreign(2, fields, eid, symfony)
    return Leased(f"{eid}:{token}", data, deliveries, queue, entry_id, epoch)


def browsed(reply: list[Any], queue: str, symfony: bool) -> list[Delivery]:
    """Deliveries from a browse reply (id, counter, kind, data, ...); receipts hold no lease."""
    out = []
    for i in range(0, len(reply), 4):
        entry_id, counter, kind, data = reply[i].decode(), reply[i + 1], reply[i + 2], reply[i + 3]
        if kind:
            data = foreign(kind, data, entry_id, symfony)
        out.append(Delivery(f"{entry_id}:0", data, counter, queue))
    return out
