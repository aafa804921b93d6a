"""Reading one TOML value into one typed Python value, with errors that name the key path.

config.py says *which* keys exist and how they relate; this module says what each *kind* of
value accepts (integers in a range, durations, sizes, signals, commands, paths...). Every reader
is a function `Value -> T` that raises ConfigError through `Value.expected()`, so messages all
read `file: key.path: expected <what>, got <the value as TOML>`.
"""

from __future__ import annotations

import ipaddress
import json
import keyword
import math
import os
import re
import shlex
import signal
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncsup import units
from asyncsup.errors import ConfigError, did_you_mean

Reader = Callable[["Value"], Any]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_REFERENCE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|)")


@dataclass(frozen=True)
class Source:
    """Where values come from: the file name for messages, its folder for relative paths,
    and the environment that ${VAR} refers to."""

    file: str
    folder: Path
    environ: Mapping[str, str]


@dataclass(frozen=True)
class Value:
    """One raw TOML value and the dotted key path that leads to it."""

    raw: object
    path: str
    source: Source

    def at(self, key: str | int) -> Value:
        """The value under `key` (a table key, or a list index) of this one."""
        raw = self.raw[key] if isinstance(key, int) else self.table()[key]  # type: ignore[index]
        if isinstance(key, int):
            return Value(raw, f"{self.path}[{key}]", self.source)
        shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
        return Value(raw, f"{self.path}.{shown}" if self.path else shown, self.source)

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(self.source.file, self.path, problem)

    def expected(self, what: str) -> ConfigError:
        return self.fail(f"expected {what}, got {toml_repr(self.raw)}")

    def table(self) -> Mapping[str, object]:
        if not isinstance(self.raw, Mapping):
            raise self.expected("a table")
        return self.raw

    def items(self) -> list[Value]:
        """The elements of a list value."""
        if not isinstance(self.raw, list):
            raise self.expected("a list")
        return [self.at(i) for i in range(len(self.raw))]


def toml_repr(raw: object, limit: int = 60) -> str:
    """A value as it would be written in TOML, shortened for an error message."""
    text = _toml_repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _toml_repr(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return json.dumps(raw, ensure_ascii=False)
    if isinstance(raw, float) and not math.isfinite(raw):
        return "nan" if math.isnan(raw) else ("inf" if raw > 0 else "-inf")
    if isinstance(raw, list):
        return "[" + ", ".join(_toml_repr(item) for item in raw) + "]"
    if isinstance(raw, Mapping):
        pairs = (f"{_toml_key(k)} = {_toml_repr(v)}" for k, v in raw.items())
        return "{ " + ", ".join(pairs) + " }" if raw else "{}"
    isoformat = getattr(raw, "isoformat", None)  # TOML dates and times
    return str(isoformat()) if callable(isoformat) else repr(raw)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def alternatives(options: Collection[str]) -> str:
    """'"a", "b" or "c"' for messages."""
    quoted = [json.dumps(option) for option in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def read_table(value: Value, readers: Mapping[str, Reader], required: Collection[str] = ()) -> dict[str, Any]:
    """Read the keys of a table present in the file; absent keys keep the dataclass defaults.

    Unknown keys are reported before anything else: a typo is the likeliest cause of the
    errors that would follow it (`comand = ...` -> "command is required").
    """
    check_keys(value, readers)
    missing = [key for key in required if key not in value.table()]
    if missing:
        raise value.fail(f"missing required key {missing[0]!r}")
    return {key: readers[key](value.at(key)) for key in value.table()}


def check_keys(value: Value, known: Collection[str]) -> None:
    for key in value.table():
        if key not in known:
            raise value.at(key).fail("unknown key" + did_you_mean(key, known))


# -- scalars ----------------------------------------------------------------------------------


def _is_int(raw: object) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)  # TOML `true` is not 1


def integer(minimum: int | None = None, maximum: int | None = None) -> Reader:
    if maximum is not None:
        what = f"an integer {minimum}..{maximum}"
    else:
        what = "an integer" if minimum is None else f"an integer >= {minimum}"

    def read(value: Value) -> int:
        raw = value.raw
        if not _is_int(raw) or not _within(raw, minimum, maximum):  # type: ignore[arg-type]
            raise value.expected(what)
        return raw  # type: ignore[return-value]

    return read


def _within(number: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or number >= minimum) and (maximum is None or number <= maximum)


def number(minimum: float, below: float | None = None) -> Reader:
    """A float or an int, >= minimum, and < below when given."""
    what = f"a number >= {minimum:g}" if below is None else f"a number in [{minimum:g}, {below:g})"

    def read(value: Value) -> float:
        raw = value.raw
        if _is_int(raw) or isinstance(raw, float):
            result = float(raw)  # type: ignore[arg-type]
            if math.isfinite(result) and result >= minimum and (below is None or result < below):
                return result
        raise value.expected(what)

    return read


def boolean(value: Value) -> bool:
    if not isinstance(value.raw, bool):
        raise value.expected("true or false")
    return value.raw


def string(value: Value) -> str:
    if not isinstance(value.raw, str) or not value.raw:
        raise value.expected("a non-empty string")
    return value.raw


def choice(*options: str) -> Reader:
    def read(value: Value) -> str:
        if value.raw not in options:
            hint = did_you_mean(value.raw, options) if isinstance(value.raw, str) else ""
            raise value.fail(f"expected {alternatives(options)}, got {toml_repr(value.raw)}{hint}")
        return value.raw

    return read


def duration(positive: bool = False) -> Reader:
    """Seconds, from a number or a string like "1m30s"; > 0 when positive, else >= 0."""

    def read(value: Value) -> float:
        if isinstance(value.raw, bool) or not isinstance(value.raw, (int, float, str)):
            raise value.expected('a duration like "500ms", "30s", "1.5s" or "2h30m"')
        try:
            seconds = units.parse_duration(value.raw)
        except ValueError as exc:
            raise value.fail(str(exc)) from None
        if positive and seconds <= 0:
            raise value.expected("a duration > 0")
        return seconds

    return read


def size(value: Value) -> int:
    """Bytes, from an integer or a string like "50MB" (see asyncsup.units)."""
    if isinstance(value.raw, bool) or not isinstance(value.raw, (int, str)):
        raise value.expected('a size like "512k", "50MB" or "1GiB"')
    try:
        return units.parse_size(value.raw)
    except ValueError as exc:
        raise value.fail(str(exc)) from None


# -- structured values ------------------------------------------------------------------------


def list_of(
    read: Reader, what: str, *, nonempty: bool = False, unique: bool = False
) -> Callable[[Value], list[Any]]:
    """A list of `what` whose elements each pass `read`; errors point at the element (`key[2]`)."""

    def read_list(value: Value) -> list[Any]:
        if not isinstance(value.raw, list):
            raise value.expected(f"a list of {what}")
        elements = value.items()
        if nonempty and not elements:
            raise value.expected("a non-empty list")
        seen: list[object] = []
        for element in elements:
            if unique and element.raw in seen:
                raise element.fail(f"{toml_repr(element.raw)} is listed twice")
            seen.append(element.raw)
        return [read(element) for element in elements]

    return read_list


def path(value: Value) -> Path:
    """A path; a relative one is taken from the config file's folder, not from the cwd."""
    text = string(value)
    return Path(os.path.normpath(value.source.folder / text))


def command(value: Value) -> tuple[str, ...]:
    """A command line: a string split like a shell would (no expansion), or a list of strings."""
    if isinstance(value.raw, str):
        try:
            argv = shlex.split(value.raw)
        except ValueError as exc:
            raise value.fail(f"cannot split the command: {exc}") from None
    elif isinstance(value.raw, list) and all(isinstance(arg, str) for arg in value.raw):
        argv = list(value.raw)
    else:
        raise value.expected("a command: a string or a list of strings")
    if not argv or not argv[0]:
        raise value.expected("a non-empty command")
    return tuple(argv)


def signal_number(value: Value) -> signal.Signals:
    """A signal, from a name with or without SIG ("TERM", "SIGHUP") or a number (15)."""
    what = 'a signal name like "TERM" or "SIGHUP", or a number'
    raw = value.raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        try:
            return signal.Signals(raw)
        except ValueError:
            raise value.expected(what) from None
    if not isinstance(raw, str):
        raise value.expected(what)
    name = raw.upper().removeprefix("SIG")
    try:
        return signal.Signals["SIG" + name]
    except KeyError:
        known = [sig.name.removeprefix("SIG") for sig in signal.Signals]
        hint = did_you_mean(name, known)
        raise value.fail(f"expected {what}, got {toml_repr(raw)}{hint}") from None


def regex(value: Value) -> re.Pattern[str]:
    text = value.raw
    if not isinstance(text, str):
        raise value.expected("a regular expression (a string)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise value.fail(f"invalid regular expression: {exc}") from None


def host_port(value: Value) -> tuple[str, int]:
    """'host:port' or '[v6addr]:port' with a port 1..65535."""
    return _address(value, 1, '"host:port" with a port 1..65535')


def listen_address(value: Value) -> tuple[str, int]:
    """Like host_port, but port 0 is allowed: any free port, which the server logs."""
    return _address(value, 0, '"host:port" like "127.0.0.1:9100" (port 0 = any free port)')


def _address(value: Value, lowest_port: int, expectation: str) -> tuple[str, int]:
    raw = value.raw
    host, _, port = raw.rpartition(":") if isinstance(raw, str) else ("", "", "")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        raise value.expected(expectation)
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; a name we cannot judge is not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def module_name(value: Value) -> str:
    raw = value.raw
    parts = raw.split(".") if isinstance(raw, str) else [""]
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        raise value.expected('a dotted module name like "app.handlers"')
    return raw  # type: ignore[return-value]


def environment(value: Value) -> dict[str, str | None]:
    """Variables for a child: strings with $VAR/${VAR} of our own environment expanded
    ($$ for a literal $), or `false` to remove an inherited variable."""
    result: dict[str, str | None] = {}
    for key in value.table():
        entry = value.at(key)
        if not key or "=" in key or "\0" in key:
            raise entry.fail("a variable name must be non-empty, without '=' or NUL")
        if entry.raw is False:
            result[key] = None
        elif isinstance(entry.raw, str):
            result[key] = _expand(entry, entry.raw)
        else:
            raise entry.expected("a string, or false to remove the variable")
    return result


def _expand(value: Value, text: str) -> str:
    def substitute(found: re.Match[str]) -> str:
        if found[1]:
            return "$"
        name = found[2] or found[3]
        if not name:
            raise value.fail('a "$" must start $NAME or ${NAME}; write "$$" for a literal "$"')
        if name not in value.source.environ:
            raise value.fail(f"environment variable {name} is not set")
        return value.source.environ[name]

    return _ENV_REFERENCE.sub(substitute, text)
