"""How `asyncsup ctl` prints results for a terminal: aligned columns and supervisorctl's words."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

STATUS_COLUMNS = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "RSS", "CPU")


def status_lines(result: Mapping[str, Any]) -> list[str]:
    """The process table, then each statistics provider, then why asyncsup is not ready."""
    rows = [_status_row(p) for p in result.get("processes", [])]
    lines = _columns([STATUS_COLUMNS, *rows]) if rows else ["no processes"]
    for kind, by_name in sorted(result.get("statistics", {}).items()):
        for name, stats in sorted(by_name.items()):
            values = ", ".join(f"{key} {_value(value)}" for key, value in stats.items())
            lines.append(f"{kind} {name}: {values}")
    if not result.get("ready", True):
        lines.append(f"not ready: {result.get('why', '')}")
    return lines


def _status_row(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        p["name"],
        p["state"],
        str(p["pid"]) if p.get("pid") else "-",
        duration(p["uptime"]) if p.get("uptime") is not None else "-",
        str(p.get("restarts", 0)),
        p.get("last_exit") or "-",
        size(p["rss"]) if p.get("rss") is not None else "-",
        cpu(p["cpu"]) if p.get("cpu") is not None else "-",
    )


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def outcome_line(outcome: Mapping[str, str]) -> str:
    """`web: started` or `web: ERROR (abnormal termination: exit 1)`, as supervisorctl words it."""
    if outcome.get("done"):
        return f"{outcome['name']}: {outcome['done']}"
    detail = f": {outcome['detail']}" if outcome.get("detail") else ""
    return f"{outcome['name']}: ERROR ({outcome['error']}{detail})"


def duration(seconds: float) -> str:
    """0:01:02, or 3 days, 4:05:06, like supervisorctl's uptime."""
    return str(datetime.timedelta(seconds=int(seconds)))


def size(n: float) -> str:
    """Bytes as 512B, 12.3K, 45.6M, 1.2G."""
    units, i = ("B", "K", "M", "G", "T"), 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f}B" if i == 0 else f"{n:.1f}{units[i]}"


def cpu(seconds: float) -> str:
    return f"{seconds:.2f}s" if seconds < 60 else duration(seconds)


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
