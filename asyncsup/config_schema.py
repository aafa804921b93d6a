"""Which keys each config table has, and how values relate across keys and tables.

config_values.py says what one kind of value accepts; this module says that `numprocs` is an
integer >= 1, that `process_name` needs {num} when numprocs > 1, that depends_on names existing
programs without a cycle, that a consumer's transports are declared in [transports]...
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import string as string_module
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from asyncsup.config import Backoff, Config, Consumer, Http, Output, Program, Ready, RetryPolicy, Settings
from asyncsup.config_values import (
    Reader,
    Value,
    boolean,
    check_keys,
    choice,
    command,
    duration,
    environment,
    host_port,
    integer,
    is_loopback,
    list_of,
    listen_address,
    module_name,
    number,
    path,
    read_table,
    regex,
    signal_number,
    size,
    string,
    toml_repr,
)
from asyncsup.errors import did_you_mean

_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # no ':' in program names: "web:0" names a process
_PROCESS_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_SCHEMES = ("memory", "sqlite", "redis", "rediss")
_UNFORWARDABLE = {
    signal.SIGKILL: "SIGKILL cannot be caught, so it cannot be forwarded",
    signal.SIGSTOP: "SIGSTOP cannot be caught, so it cannot be forwarded",
    signal.SIGCHLD: "SIGCHLD tells asyncsup that its own children exited; it cannot be forwarded",
}


def build_config(root: Value, file: Path) -> Config:
    """The Config for parsed TOML `root`; the first error found is raised as ConfigError."""
    check_keys(root, ("asyncsup", "http", "programs", "transports", "consumers"))
    transports = _transports(_section(root, "transports"))
    return Config(
        file=file,
        settings=Settings(**read_table(_section(root, "asyncsup"), _SETTINGS)),
        http=_http(_section(root, "http")),
        programs=_programs(_section(root, "programs")),
        transports=transports,
        consumers=_consumers(_section(root, "consumers"), transports),
    )


def _section(root: Value, key: str) -> Value:
    return root.at(key) if key in root.table() else Value({}, key, root.source)


def _named_tables(value: Value) -> list[tuple[str, Value]]:
    """The NAME = ... entries of [programs], [transports] or [consumers], names checked."""
    entries = [(name, value.at(name)) for name in value.table()]
    for name, entry in entries:
        if not _NAME.fullmatch(name):
            raise entry.fail("a name may only contain letters, digits, '_', '.' and '-'")
    return entries


def _ordered(
    value: Value, fields: Mapping[str, Any], low: tuple[str, float], high: tuple[str, float]
) -> None:
    """Check low <= high for two keys of one table, blaming whichever the user wrote."""
    (low_key, low_value), (high_key, high_value) = low, high
    if low_value <= high_value:
        return
    if high_key in fields:
        raise value.at(high_key).expected(f"a duration >= {low_key} ({low_value:g}s)")
    raise value.at(low_key).expected(f"a duration <= {high_key} ({high_value:g}s)")


# -- [asyncsup] and [transports] --------------------------------------------------------------

_SETTINGS: dict[str, Reader] = {
    "shutdown_timeout": duration(positive=True),
    "control_socket": path,
    "log_format": choice("text", "json"),
    "log_level": choice("debug", "info", "warning", "error"),
}


def _http(value: Value) -> Http:
    http = Http(**read_table(value, {"listen": listen_address, "allow_remote": boolean}))
    if http.listen is not None and not http.allow_remote and not is_loopback(http.listen[0]):
        raise value.at("listen").fail(
            f"{http.listen[0]} is not a loopback address, so /metrics would be open to the network; "
            "listen on 127.0.0.1, or set allow_remote = true"
        )
    return http


def _transports(value: Value) -> dict[str, str]:
    return {name: _transport_url(entry) for name, entry in _named_tables(value)}


def _transport_url(value: Value) -> str:
    url = string(value)
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = SplitResult("", "", "", "", "")
    if parts.scheme not in _SCHEMES:
        hint = did_you_mean(parts.scheme, _SCHEMES) if parts.scheme else ""
        schemes = ", ".join(f"{scheme}://" for scheme in _SCHEMES)
        got = f"{toml_repr(url)}{hint}"
        raise value.fail(f"expected a URL starting with one of {schemes}, got {got}")
    return _sqlite_url(value, parts) if parts.scheme == "sqlite" else url


def _sqlite_url(value: Value, parts: SplitResult) -> str:
    """sqlite:///relative.db is relative to the config file's folder; sqlite:////abs.db is not."""
    if parts.netloc or len(parts.path) < 2:
        raise value.expected('"sqlite:///relative/file.db" or "sqlite:////absolute/file.db"')
    file = parts.path[1:]
    if file != ":memory:":
        file = os.path.normpath(value.source.folder / file)
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"sqlite:///{file}{query}{fragment}"


# -- [programs.NAME] --------------------------------------------------------------------------


def _user(value: Value) -> str:
    name = string(value)
    if os.geteuid() != 0 and name != _current_user():
        raise value.fail("can only switch user when asyncsup runs as root")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise value.fail(f"no such user {name!r}") from None
    return name


def _current_user() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry, common in containers
        return None


def _umask(value: Value) -> int:
    raw = value.raw
    if isinstance(raw, str) and re.fullmatch(r"(0o)?[0-7]{1,4}", raw):
        raw = int(raw.removeprefix("0o"), 8)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 0o777:
        raise value.expected('an octal umask like "022"')
    return raw


def _startretries(value: Value) -> int | None:
    if value.raw == "inf":
        return None
    if isinstance(value.raw, bool) or not isinstance(value.raw, int) or value.raw < 0:
        raise value.expected('an integer >= 0, or "inf" to retry forever')
    return value.raw


def _autorestart(value: Value) -> str:
    if isinstance(value.raw, bool):  # supervisord's true/false
        return "always" if value.raw else "never"
    return str(choice("always", "on-failure", "never")(value))


def _forwardable(value: Value) -> signal.Signals:
    sig = signal_number(value)
    if sig in _UNFORWARDABLE:
        raise value.fail(_UNFORWARDABLE[sig])
    return sig


def _backoff(value: Value) -> Backoff:
    fields = read_table(value, _BACKOFF)
    backoff = Backoff(**fields)
    _ordered(value, fields, ("initial", backoff.initial), ("max", backoff.max))
    return backoff


def _ready(value: Value) -> Ready:
    fields = read_table(value, _READY)
    probes = [key for key in ("tcp", "line", "command") if key in fields]
    if len(probes) != 1:
        got = " and ".join(probes) or "none"
        raise value.fail(f"expected exactly one of tcp, line or command, got {got}")
    return Ready(**fields)


def _output(value: Value) -> Output:
    if value.raw in ("console", "off"):
        return Output(mode=value.raw)
    if isinstance(value.raw, Mapping) and "console" in value.raw:
        if "file" in value.raw:
            raise value.fail("expected either console or file, not both")
        fields = read_table(value, _OUTPUT_CONSOLE)
        if fields["console"] is not True:
            raise value.at("console").expected('true (for no output at all: stdout = "off")')
        return Output(mode="console", prefix=fields.get("prefix", True))
    if isinstance(value.raw, Mapping):
        return Output(mode="file", **read_table(value, _OUTPUT_FILE, required=("file",)))
    raise value.expected(
        '"console", "off", a table like { file = "logs/web.log" } or { console = true, prefix = false }'
    )


_BACKOFF: dict[str, Reader] = {
    "initial": duration(positive=True),
    "multiplier": number(1),
    "max": duration(positive=True),
    "jitter": number(0, below=1),
}
_READY: dict[str, Reader] = {
    "tcp": host_port,
    "line": regex,
    "command": command,
    "timeout": duration(positive=True),
    "interval": duration(positive=True),
}
_OUTPUT_FILE: dict[str, Reader] = {"file": path, "max_bytes": size, "backups": integer(0), "prefix": boolean}
_OUTPUT_CONSOLE: dict[str, Reader] = {"console": boolean, "prefix": boolean}
_PROGRAM: dict[str, Reader] = {
    "command": command,
    "numprocs": integer(1),
    "numprocs_start": integer(0),
    "process_name": string,
    "directory": path,
    "environment": environment,
    "user": _user,
    "umask": _umask,
    "stdin": choice("null", "inherit"),
    "autostart": boolean,
    "priority": integer(),
    "startsecs": duration(),
    "startretries": _startretries,
    "autorestart": _autorestart,
    "exitcodes": lambda v: frozenset(list_of(integer(0, 255), "exit codes 0..255")(v)),
    "backoff": _backoff,
    "flap_limit": integer(1),
    "flap_window": duration(positive=True),
    "critical": boolean,
    "restart_on_deploy": boolean,
    "depends_on": lambda v: tuple(list_of(string, "program names", unique=True)(v)),
    "ready": _ready,
    "stop_signal": signal_number,
    "stop_timeout": duration(),
    "forward_signals": lambda v: frozenset(list_of(_forwardable, "signal names")(v)),
    "redirect_stderr": boolean,
    "stdout": _output,
    "stderr": _output,
}


def _programs(value: Value) -> dict[str, Program]:
    programs = {name: _program(entry, name) for name, entry in _named_tables(value)}
    _check_dependencies(value, programs)
    _check_process_names(value, programs)
    return programs


def _program(value: Value, name: str) -> Program:
    fields = read_table(value, _PROGRAM, required=("command",))
    if fields.get("redirect_stderr") and "stderr" in fields:
        raise value.at("stderr").fail("cannot be set when redirect_stderr = true")
    program = Program(name=name, **fields)
    if "process_name" in fields:
        _check_template(value.at("process_name"), program)
    return program


def _check_template(value: Value, program: Program) -> None:
    try:
        parsed = list(string_module.Formatter().parse(program.process_name))
    except ValueError as exc:
        raise value.fail(f"invalid template: {exc}") from None
    placeholders = [name for _, name, _, _ in parsed if name is not None]
    for name in placeholders:
        if name not in ("program", "num"):
            hint = did_you_mean(name, ("program", "num"))
            raise value.fail(f"unknown placeholder {{{name}}}{hint}; known: {{program}}, {{num}}")
    if program.numprocs > 1 and "num" not in placeholders:
        raise value.fail("must contain {num} when numprocs > 1, so each process has its own name")
    try:
        program.process_names()
    except (ValueError, TypeError) as exc:
        raise value.fail(f"invalid template: {exc}") from None


def _check_dependencies(value: Value, programs: Mapping[str, Program]) -> None:
    for name, program in programs.items():
        for index, dependency in enumerate(program.depends_on):
            if dependency not in programs:
                hint = did_you_mean(dependency, programs)
                where = value.at(name).at("depends_on").at(index)
                raise where.fail(f"no program named {dependency!r}{hint}")
    cycle = _find_cycle({name: program.depends_on for name, program in programs.items()})
    if cycle:
        where = value.at(cycle[0]).at("depends_on")
        raise where.fail("dependency cycle: " + " -> ".join(cycle))


def _find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """The first cycle found by a depth-first walk in file order, as [a, b, ..., a]."""
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return None
        for dependency in graph[node]:
            cycle = visit(dependency, [*trail, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    return next((cycle for node in graph if (cycle := visit(node, []))), None)


def _check_process_names(value: Value, programs: Mapping[str, Program]) -> None:
    """Process names are what `asyncsup ctl` and the log prefixes use: unique, and not
    another program's name, so `ctl restart X` never means two things."""
    owners: dict[str, str] = {}
    for name, program in programs.items():
        where = value.at(name).at("process_name") if program.process_name else value.at(name)
        for process in program.process_names():
            if not _PROCESS_NAME.fullmatch(process):
                raise where.fail(
                    f"process name {process!r} may only contain letters, digits, '_', '.', '-', ':'"
                )
            if process in owners:
                other = owners[process]
                raise where.fail(f"process name {process!r} is already used by program {other!r}")
            if process in programs and process != name:
                raise where.fail(f"process name {process!r} is the name of another program")
            owners[process] = name


# -- [consumers.NAME] -------------------------------------------------------------------------


def _retry(value: Value) -> RetryPolicy:
    fields = read_table(value, _RETRY)
    retry = RetryPolicy(**fields)
    _ordered(value, fields, ("delay", retry.delay), ("max_delay", retry.max_delay))
    return retry


_RETRY: dict[str, Reader] = {
    "max_retries": integer(0),
    "delay": duration(),
    "multiplier": number(1),
    "max_delay": duration(),
    "jitter": number(0, below=1),
}
_CONSUMER: dict[str, Reader] = {
    "handlers": lambda v: tuple(list_of(module_name, "modules", nonempty=True, unique=True)(v)),
    "concurrency": integer(1),
    "prefetch": integer(0),
    "lease": duration(positive=True),
    "retry": _retry,
    "limit": integer(0),
    "time_limit": duration(),
    "memory_limit": size,
    "failure_limit": integer(0),
    "processes": integer(0),
}


def _transport_name(known: Mapping[str, str]) -> Reader:
    def read(value: Value) -> str:
        name = string(value)
        if name not in known:
            hint = did_you_mean(name, known) if known else " ([transports] is empty)"
            raise value.fail(f"no transport named {name!r}{hint}")
        return name

    return read


def _consumers(value: Value, transports: Mapping[str, str]) -> dict[str, Consumer]:
    named = _transport_name(transports)
    readers: dict[str, Reader] = {
        **_CONSUMER,
        "transports": lambda v: tuple(list_of(named, "transport names", nonempty=True, unique=True)(v)),
        "failure_transport": named,
    }
    consumers = {}
    for name, entry in _named_tables(value):
        fields = read_table(entry, readers, required=("transports", "handlers"))
        if fields.get("failure_transport") in fields["transports"]:
            raise entry.at("failure_transport").fail(
                "must not be one of the consumer's transports: failed messages would come back"
            )
        consumers[name] = Consumer(name=name, **fields)
    return consumers
