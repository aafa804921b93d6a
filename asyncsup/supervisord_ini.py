"""supervisord.conf -> asyncsup TOML, for `asyncsup from-supervisord supervisord.conf > asyncsup.toml`.

The file is read as supervisord 4.3 reads it: INI where `;` or `#` after whitespace starts a comment,
`[include] files = ...` globs relative to the main file, `%(here)s` as the folder of the file that
says it, and `%(name)s` expansions. The TOML written runs the same programs the same way; where
asyncsup differs or has no equivalent, a `# note:` in the output says what became of the option, so
nothing is dropped silently.

What varies per process or per start is kept for run time, never baked in with the values of the
machine that converts: `%(ENV_X)s` becomes `${X}` in `environment` (asyncsup expands it when it loads
the config), and a command that uses `%(ENV_X)s`, `%(process_num)d` or `%(host_node_name)s` runs
through `/bin/sh -c 'exec ...'` with `"$X"`, `"$ASYNCSUP_PROCESS_NUM"`, `"$(uname -n)"` in their place.
"""

from __future__ import annotations

import configparser
import glob
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncsup.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TRUE, FALSE = ("yes", "true", "on", "1"), ("no", "false", "off", "0")
AUTORESTART = {"unexpected": "on-failure", **dict.fromkeys(TRUE, "always"), **dict.fromkeys(FALSE, "never")}
EXPANSION = re.compile(r"%\((\w+)\)([-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrs])|%%")
MARK = "\x00"  # around the number of a run-time part of a command (see _command)

# What asyncsup deliberately leaves out, and why (for the notes in the output).
LEFT_OUT = {
    "serverurl": "there is no XML-RPC server; `asyncsup ctl` talks to the control socket",
    "stopasgroup": "asyncsup always sends the stop signal to the program's process group",
    "killasgroup": "asyncsup always sends SIGKILL to the program's process group",
    "stdout_capture_maxbytes": "no PROCESS_COMMUNICATION events",
    "stderr_capture_maxbytes": "no PROCESS_COMMUNICATION events",
    "stdout_events_enabled": "no event listeners",
    "stderr_events_enabled": "no event listeners",
    "stdout_syslog": "no syslog output; the console output goes to the container's log",
    "stderr_syslog": "no syslog output; the console output goes to the container's log",
}
SECTIONS_LEFT_OUT = {
    "unix_http_server": "`asyncsup ctl` uses asyncsup's own control socket",
    "inet_http_server": "no XML-RPC over HTTP; see [http] for health checks and metrics",
    "supervisorctl": "`asyncsup ctl` finds the control socket from the config",
    "rpcinterface": "no XML-RPC interface",
    "eventlistener": "no event listeners: `critical = true` covers the common 'exit when X dies' one",
    "fcgi-program": "no FastCGI sockets",
}


@dataclass
class Converted:
    """The programs as TOML tables (in file order), and what could not be carried over."""

    programs: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Converted {len(self.programs)} program(s), {len(self.notes)} note(s)>"


class _Section:
    """One section ([program:x], [supervisord]): typed reads whose errors name the file, section
    and option. `%(here)s` is the folder of the file the section is in, as supervisord has it."""

    def __init__(self, parser: configparser.RawConfigParser, name: str, source: str, here: str) -> None:
        self.name, self.source = name, source
        self.options = {k: v.replace("%(here)s", here) for k, v in parser.items(name)}

    def __repr__(self) -> str:
        return f"<_Section [{self.name}] of {self.source}, {len(self.options)} option(s)>"

    def error(self, option: str, problem: str) -> ConfigError:
        return ConfigError(self.source, f"[{self.name}] {option}".rstrip(), problem)

    def fail(self, option: str, expected: str) -> ConfigError:
        return self.error(option, f"expected {expected}, got {self.options.get(option)!r}")

    def get(self, option: str, convert: Callable[[str], Any], expected: str) -> Any:
        try:
            return convert(self.options[option].strip())
        except (ValueError, KeyError):
            raise self.fail(option, expected) from None


def convert(path: str | Path) -> Converted:
    """Read a supervisord config (and its includes) into asyncsup programs and notes."""
    main = Path(path)
    parser, sources = _read(main)
    out = Converted(notes=[_note_general()])
    environment = _global_environment(parser, main, out)
    for name in parser.sections():
        kind, _, rest = name.partition(":")
        if kind == "program" and rest:
            section = _Section(parser, name, sources[name], str(Path(sources[name]).resolve().parent))
            out.programs[rest] = _program(section, rest, environment, out.notes)
        elif kind in SECTIONS_LEFT_OUT:
            out.notes.append(f"[{name}] left out: {SECTIONS_LEFT_OUT[kind]}")
        elif kind == "group":
            out.notes.append(f"[{name}] left out: asyncsup has no groups; its programs are kept as they are")
        elif kind not in ("supervisord", "include"):
            out.notes.append(f"[{name}] left out: not a section supervisord 4.3 knows")
    if not out.programs:
        raise ConfigError(str(main), "", "no [program:x] section to convert")
    return out


def _read(main: Path) -> tuple[configparser.RawConfigParser, dict[str, str]]:
    """The parser over the main file and its includes, and the file each section came from."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    sources: dict[str, str] = {}
    _read_file(parser, main, sources)
    if parser.has_section("include"):
        files = parser.get("include", "files", fallback="").replace("%(here)s", str(main.parent.resolve()))
        if not files.strip():
            raise ConfigError(str(main), "[include]", "no files = ... setting")
        for pattern in files.split():
            for name in sorted(glob.glob(os.path.join(main.parent, pattern))):
                _read_file(parser, Path(name), sources)
    return parser, sources


def _read_file(parser: configparser.RawConfigParser, path: Path, sources: dict[str, str]) -> None:
    before = set(parser.sections())
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, str(path))
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(str(path), "", f"not a supervisord INI file: {exc.message}") from None
    for name in set(parser.sections()) - before:
        sources[name] = str(path)


def _note_general() -> str:
    return (
        "stop signals and SIGKILL go to each program's process group (supervisord's stopasgroup "
        "= true); stdin is /dev/null; output goes to asyncsup's console unless a file is named"
    )


def _global_environment(parser: configparser.RawConfigParser, main: Path, out: Converted) -> dict[str, str]:
    """[supervisord] environment applies to every program; the rest of [supervisord] is ours."""
    if not parser.has_section("supervisord"):
        return {}
    section = _Section(parser, "supervisord", str(main), str(main.parent.resolve()))
    ignored = sorted(k for k in section.options if k != "environment")
    if ignored:
        out.notes.append(
            f"[supervisord] {', '.join(ignored)} left out: asyncsup runs in the foreground and logs "
            "to stderr; see [asyncsup] for shutdown_timeout, control_socket, log_format"
        )
    if "environment" not in section.options:
        return {}
    table, per_process = _environment(section, {})
    if per_process:  # supervisord itself refuses it: there is no process here
        raise section.fail("environment", "no %(process_num) in [supervisord]")
    return table


def _program(section: _Section, name: str, base_env: dict[str, str], notes: list[str]) -> dict[str, Any]:
    opts = section.options
    if "command" not in opts:
        raise section.error("command", "missing (every program needs one)")
    numprocs = section.get("numprocs", _int_at_least(1), "an integer >= 1") if "numprocs" in opts else 1
    static = {"program_name": name, "group_name": name, "numprocs": numprocs}
    env, per_process = _environment(section, static)
    table: dict[str, Any] = {"command": _command(section, static, per_process)}
    table.update(_process_names(section, name, numprocs))
    table.update(_simple_options(section, static))
    env = {**base_env, **env}
    if env:
        table["environment"] = env
    table.update(_outputs(section, static, notes))
    for option in sorted(set(opts) & set(LEFT_OUT)):
        notes.append(f"[{section.name}] {option} left out: {LEFT_OUT[option]}")
    unknown = sorted(set(opts) - KNOWN - set(LEFT_OUT))
    if unknown:
        what = "not [program:x] options of supervisord 4.3"
        notes.append(f"[{section.name}] {', '.join(unknown)} left out: {what}")
    return table


def _simple_options(section: _Section, static: dict[str, Any]) -> dict[str, Any]:
    """The options that map one to one (with supervisord's defaults where ours differ)."""
    opts, out = section.options, dict[str, Any]()
    # supervisord restarts only on unexpected exits by default; asyncsup's default is "always".
    out["autorestart"] = AUTORESTART["unexpected"]
    if "autorestart" in opts:
        out["autorestart"] = section.get("autorestart", lambda v: AUTORESTART[v.lower()],
                                         "true, false or unexpected")  # fmt: skip
    readers: dict[str, tuple[str, Callable[[str], Any], str]] = {
        "numprocs_start": ("numprocs_start", _int_at_least(0), "an integer >= 0"),
        "priority": ("priority", int, "an integer"),
        "autostart": ("autostart", _boolean, "true or false"),
        "startsecs": ("startsecs", _seconds, "a whole number of seconds"),
        "startretries": ("startretries", _int_at_least(0), "an integer >= 0"),
        "exitcodes": ("exitcodes", _exitcodes, "exit codes 0..255, separated by commas"),
        "stopsignal": ("stop_signal", _signal_name, "a signal name or number"),
        "stopwaitsecs": ("stop_timeout", _seconds, "a whole number of seconds"),
        "redirect_stderr": ("redirect_stderr", _boolean, "true or false"),
        "directory": ("directory", lambda v: _static_text(section, "directory", v, static), "a folder"),
        "user": ("user", lambda v: _static_text(section, "user", v, static), "a user name"),
        "umask": ("umask", lambda v: f"{int(v, 8):03o}", "an octal umask like 022"),
    }
    for option, (key, read, expected) in readers.items():
        if option in opts:
            out[key] = section.get(option, read, expected)
    if out.get("redirect_stderr") is False:
        del out["redirect_stderr"]
    return out


KNOWN = {
    "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart", "autorestart",
    "startsecs", "startretries", "exitcodes", "stopsignal", "stopwaitsecs", "redirect_stderr",
    "directory", "user", "umask", "environment",
    *(f"{s}_logfile{x}" for s in ("stdout", "stderr") for x in ("", "_maxbytes", "_backups")),
}  # fmt: skip


def _process_names(section: _Section, name: str, numprocs: int) -> dict[str, Any]:
    """numprocs, and process_name unless it is asyncsup's default: %(process_num)02d -> {num:02d}."""
    out: dict[str, Any] = {"numprocs": numprocs} if numprocs > 1 else {}
    template = section.options.get("process_name", "%(program_name)s")
    if numprocs > 1 and "%(process_num)" not in template:
        raise section.fail("process_name", "a name with %(process_num)d when numprocs > 1")
    literal = template.replace("{", "{{").replace("}", "}}")  # braces are placeholders in asyncsup
    as_template = {"process_num": lambda spec: "{num}" if spec in ("d", "s") else "{num:" + spec + "}"}
    static = {"program_name": "{program}", "group_name": name}
    ours = _expand(section, "process_name", literal, static, as_template)
    if ours != ("{program}:{num}" if numprocs > 1 else "{program}"):
        out["process_name"] = ours
    return out


class _ShellWords:
    """Text with run-time parts, made into shell words.

    A run-time part is first put in as a numbered marker that shlex.split leaves alone, so that a
    command splits exactly as supervisord splits it; each word is then quoted for /bin/sh, with the
    run-time parts put back as shell expansions ("$ASYNCSUP_PROCESS_NUM", "${HOME}").
    """

    def __init__(self) -> None:
        self.snippets: list[str] = []

    def later(self, snippet: str) -> str:
        self.snippets.append(snippet)
        return f"{MARK}{len(self.snippets) - 1}{MARK}"

    def word(self, text: str) -> str:
        parts = text.split(MARK)  # literal, number, literal, number, ..., literal
        return "".join(self.snippets[int(p)] if i % 2 else _quoted(p) for i, p in enumerate(parts))

    def expand(self, section: _Section, option: str, text: str, static: dict[str, Any]) -> str:
        at_run_time = {
            "process_num": lambda spec: self.later(_num_in_shell(spec)),
            "host_node_name": lambda spec: self.later('"$(uname -n)"'),
        }
        return _expand(section, option, text, static, at_run_time, env=lambda n: self.later(f'"${{{n}}}"'))


def _quoted(literal: str) -> str:
    return shlex.quote(literal) if literal else ""


def _command(section: _Section, static: dict[str, Any], exports: dict[str, str]) -> str | list[str]:
    """The command; through /bin/sh only when part of it is known only at run time. `exports` are
    variables whose value differs per process (shell words): the shell sets them, then execs."""
    shell = _ShellWords()
    text = shell.expand(section, "command", section.options["command"], static)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise section.error("command", f"cannot split it: {exc}") from None
    if not argv:
        raise section.fail("command", "a command")
    if not shell.snippets and not exports:
        return text.strip()
    prelude = "".join(f"export {key}={value}; " for key, value in exports.items())
    return ["/bin/sh", "-c", prelude + "exec " + " ".join(shell.word(arg) for arg in argv)]


def _num_in_shell(spec: str) -> str:
    if spec in ("d", "s"):
        return '"$ASYNCSUP_PROCESS_NUM"'
    return f"\"$(printf '%{spec}' \"$ASYNCSUP_PROCESS_NUM\")\""


def _expand(
    section: _Section,
    option: str,
    text: str,
    static: dict[str, Any],
    at_run_time: dict[str, Callable[[str], str]] | None = None,
    env: Callable[[str], str] | None = None,
) -> str:
    """supervisord's `%(name)s` expansions: static ones now, the others by the callables given."""
    at_run_time = at_run_time or {}

    def replace(match: re.Match[str]) -> str:
        key, spec = match[1], match[2]
        if key is None:
            return "%"
        if key in at_run_time:
            return at_run_time[key](spec)
        if key.startswith("ENV_") and env is not None:
            return env(key[4:])
        if key not in static:
            where = "only in command" if key in ("host_node_name", "process_num") else "not known"
            known = ", ".join(sorted([*static, *at_run_time]))
            raise section.error(option, f"%({key}){spec} is {where} (known here: {known})")
        try:
            return str(("%" + spec) % static[key])
        except (TypeError, ValueError):
            raise section.fail(option, f"%({key}) with a format that fits {static[key]!r}") from None

    return EXPANSION.sub(replace, text)


def _static_text(section: _Section, option: str, text: str, static: dict[str, Any]) -> str:
    """A value asyncsup reads as it is (a path, a user): expansions now, none left for run time."""
    out = _expand(section, option, text, static, env=lambda name: MARK)
    if MARK in out:
        raise section.fail(option, "no %(ENV_X)s here (asyncsup expands no variables in it)")
    return out


def _environment(section: _Section, static: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """KEY="val",KEY2=val2 split as supervisord splits it, as (asyncsup's environment table, the
    variables that differ per process as shell words). In the table %(ENV_X)s becomes ${X}, which
    asyncsup expands when it loads the config, and a literal $ becomes $$."""
    lexer = shlex.shlex(section.options.get("environment", ""))
    lexer.wordchars += "/.+-():%"  # supervisord's, and % since we split before expanding
    tokens = list(lexer)
    table: dict[str, str] = {}
    per_process: dict[str, str] = {}
    for i in range(0, len(tokens), 4):
        key, eq, value = [*tokens[i : i + 3], "", "", ""][:3]
        if eq != "=" or not value or tokens[i + 3 : i + 4] not in ([], [","]):
            raise section.fail("environment", 'KEY="value",KEY2="value2"')
        value = value.strip("'\"")
        if "%(process_num)" in value:
            shell = _ShellWords()
            per_process[key] = shell.word(shell.expand(section, "environment", value, static))
        else:
            ours = value.replace("$", "$$")
            table[key] = _expand(section, "environment", ours, static, env=lambda n: f"${{{n}}}")
    return table, per_process


# supervisord copies a program's output to these raw; so does `{ console = true, prefix = false }`
# (to asyncsup's stdout for stdout, its stderr for stderr, whichever of the two was named).
CONSOLE_FILES = frozenset(
    f"{folder}/{name}"
    for folder, names in (("/dev", ("stdout", "stderr")), ("/dev/fd", "12"), ("/proc/self/fd", "12"))
    for name in names
)


def _outputs(section: _Section, static: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    redirected = section.options.get("redirect_stderr", "").lower() in TRUE
    for stream in ("stdout",) if redirected else ("stdout", "stderr"):
        key = f"{stream}_logfile"
        target = section.options.get(key, "AUTO").strip()
        lowered = target.lower()
        if lowered in CONSOLE_FILES:  # the docker idiom: the program's lines as written, unlabelled
            out[stream] = {"console": True, "prefix": False}
            continue
        if lowered == "auto":
            if key in section.options:
                notes.append(f"[{section.name}] {key} = AUTO: written to asyncsup's console instead")
            continue
        if lowered in ("none", "off"):
            out[stream] = "off"
            continue
        if lowered == "syslog":
            notes.append(f"[{section.name}] {key} = syslog: written to asyncsup's console instead")
            continue
        table: dict[str, Any] = {"file": _static_text(section, key, target, static)}
        if f"{key}_maxbytes" in section.options:
            table["max_bytes"] = section.get(f"{key}_maxbytes", _byte_size, "a size like 50MB")
        if f"{key}_backups" in section.options:
            table["backups"] = section.get(f"{key}_backups", _int_at_least(0), "an integer >= 0")
        out[stream] = table
    return out


# --- values as supervisord reads them ---------------------------------------------------------------


def _boolean(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(text)


def _int_at_least(low: int) -> Callable[[str], int]:
    def read(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(text)
        return value

    return read


def _seconds(text: str) -> str:
    return f"{_int_at_least(0)(text)}s"


def _exitcodes(text: str) -> list[int]:
    codes = [int(code) for code in text.split(",")] if text else []
    if any(not 0 <= code <= 255 for code in codes):
        raise ValueError(text)
    return codes


def _signal_name(text: str) -> str:
    if text.isdigit():
        return signal.Signals(int(text)).name.removeprefix("SIG")
    name = text.upper().removeprefix("SIG")
    return signal.Signals["SIG" + name].name.removeprefix("SIG")  # KeyError: not a signal


def _byte_size(text: str) -> str:
    """supervisord's KB/MB/GB are binary: 1MB = 1,048,576 bytes, written here as MiB."""
    units = {"kb": "KiB", "mb": "MiB", "gb": "GiB"}
    lowered = text.lower()
    for suffix, ours in units.items():
        if lowered.endswith(suffix):
            return f"{int(lowered[:-2])}{ours}"
    return str(int(text))


def check_loads(text: str, path: str | Path) -> str | None:
    """Why asyncsup would refuse this TOML here (e.g. a user that only exists in the image), if it would."""
    from asyncsup.config import parse_config

    try:
        parse_config(tomllib.loads(text), Path(path))
    except ConfigError as exc:
        return str(exc)
    return None


# --- TOML out ---------------------------------------------------------------------------------------


def to_toml(converted: Converted, source: str | Path) -> str:
    """The config as TOML: notes first, then one [programs.NAME] table per program."""
    lines = [f"# Converted from {source} by `asyncsup from-supervisord`.", "#"]
    lines += [f"# note: {note}" for note in converted.notes]
    for name, table in converted.programs.items():
        lines += ["", f"[programs.{_key(name)}]"]
        lines += [f"{_key(key)} = {_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")
