"""Durations and sizes as people write them in config files, and back for printing.

Durations: a number of seconds, or a string of one or more `<number><unit>` parts with units
`h`, `m`, `s`, `ms` from largest to smallest, each at most once: "500ms", "30s", "1.5s", "2h30m".
A string always needs a unit ("30" could mean anything), except "0".

Sizes: an integer number of bytes, or a string `<number><unit>`, unit case-insensitive:
    B (or none)          bytes
    kB  MB  GB  TB       decimal, 1000**n (SI, what disks and networks mean)
    KiB MiB GiB TiB      binary, 1024**n (IEC)
    K   M   G   T        binary, 1024**n, as in PHP's memory_limit = "256M", the JVM's -Xmx,
                         docker --memory and nginx: ops people write "512k" and mean KiB.
The result must be a whole number of bytes ("1.5KiB" is 1536, "1.5B" is an error).

Errors are ValueError with a message of the form `expected ..., got "..."`; the config loader
prefixes the file and the key path.
"""

from __future__ import annotations

import json
import math
import re

_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_DURATION_HINT = 'expected a duration like "500ms", "30s", "1.5s" or "2h30m"'

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}  # fmt: skip
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+) ?([A-Za-z]*)")
_SIZE_HINT = 'expected a size like "512k", "50MB" or "1GiB"'

# For printing: largest unit first, binary before decimal at the same magnitude.
_FORMAT_SIZE_UNITS = [
    ("TiB", 1024**4), ("TB", 1000**4), ("GiB", 1024**3), ("GB", 1000**3),
    ("MiB", 1024**2), ("MB", 1000**2), ("KiB", 1024), ("kB", 1000),
]  # fmt: skip


def _show(value: object) -> str:
    """A value as the user wrote it: strings quoted, numbers plain."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def parse_duration(value: str | float) -> float:
    """Seconds in `value`: a number of seconds, or a string like "500ms", "1m30s"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{_DURATION_HINT}, got {_show(value)}")
    if not isinstance(value, str):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a duration >= 0, got {_show(value)}")
        return float(value)
    return _parse_duration_text(value)


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    total, pos, last_rank = 0.0, 0, -1
    ranks = list(_DURATION_UNITS)
    while pos < len(stripped):
        part = _DURATION_PART.match(stripped, pos)
        # A unit out of order or repeated ("30s1m", "1s1s") is far more likely a typo than intent.
        if part is None or ranks.index(part[2]) <= last_rank:
            raise ValueError(f"{_DURATION_HINT}, got {_show(text)}")
        last_rank = ranks.index(part[2])
        total += float(part[1]) * _DURATION_UNITS[part[2]]
        pos = part.end()
    if pos == 0:
        raise ValueError(f"{_DURATION_HINT}, got {_show(text)}")
    return total


def parse_size(value: str | int) -> int:
    """Bytes in `value`: an integer, or a string like "512k", "50MB", "1GiB" (see module doc)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{_SIZE_HINT}, got {_show(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    found = _SIZE.fullmatch(value.strip())
    factor = _SIZE_UNITS.get(found[2].lower()) if found else None
    if found is None or factor is None:
        raise ValueError(f"{_SIZE_HINT}, got {_show(value)}")
    # Exact in integers ("1.5k" is 3 * 1024 / 2): no float rounding, and no `decimal` import,
    # which cost every `asyncsup run` ~0.3 MB of RSS.
    whole, _, fraction = found[1].partition(".")
    scaled: int = int(whole + fraction or "0") * factor
    denominator: int = 10 ** len(fraction)  # int ** int is Any to mypy (a negative power is a float)
    if scaled % denominator:
        raise ValueError(f"expected a whole number of bytes, got {_show(value)}")
    return scaled // denominator


def format_duration(seconds: float) -> str:
    """A duration for people, rounded to milliseconds: 0.5 -> "500ms", 90 -> "1m30s".

    The result reads back with parse_duration (to the millisecond).
    """
    if not math.isfinite(seconds):
        return "forever" if seconds > 0 else "-forever"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest:
        whole, frac = divmod(rest, 1000)
        parts.append(f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


def format_size(size: int) -> str:
    """A size for people: exact in the largest unit that divides it ("50MiB", "256MB", "1000B");
    sizes no unit divides are rounded to one decimal in binary units ("1.2MiB"), for display only.
    """
    if size < 0:
        return "-" + format_size(-size)
    for name, factor in _FORMAT_SIZE_UNITS:
        if size >= factor and size % factor == 0:
            return f"{size // factor}{name}"
    if size < 1024:
        return f"{size}B"
    name, factor = next((n, f) for n, f in _FORMAT_SIZE_UNITS if "i" in n and size >= f)
    return f"{size / factor:.1f}{name}"
