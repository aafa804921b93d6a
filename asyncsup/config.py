"""Configuration: TOML -> frozen dataclasses, validated strictly.

Every key has a default; every error names the file, the key path and what was expected;
unknown keys are errors with a "did you mean". Nothing starts on a bad config.

This module holds the dataclasses and the entry points (load_config, parse_config, describe).
Which keys each table has lives in config_schema.py; what each kind of value accepts
(durations, sizes, signals, commands, paths) in config_values.py and units.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asyncsup.config_values import Source, Value
from asyncsup.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

AutoRestart = Literal["always", "on-failure", "never"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Backoff:
    """Delay before retrying a program that failed to start: initial * multiplier**n, capped."""

    initial: float = 1.0
    multiplier: float = 2.0
    max: float = 60.0
    jitter: float = 0.1  # +- this fraction, so a fleet does not retry in lockstep


@dataclass(frozen=True)
class Ready:
    """How a program proves it is up; it is RUNNING only once this passes."""

    tcp: tuple[str, int] | None = None
    line: re.Pattern[str] | None = None
    command: tuple[str, ...] | None = None
    timeout: float = 60.0
    interval: float = 0.5  # between tcp/command probes


@dataclass(frozen=True)
class Output:
    """Where one output stream of a program goes."""

    mode: Literal["console", "file", "off"] = "console"
    file: Path | None = None
    max_bytes: int = 50 * 1024 * 1024  # 0 = never rotate
    backups: int = 10
    # True: "name | line" (JSON lines in json log format). False: the program's lines as it wrote
    # them, whole and never mixed mid-line with another program's, so JSON logs stay parseable (what
    # supervisord writes). None: the mode's default, prefixed on the console (programs share it),
    # as written to a file (add the prefix when processes share the file).
    prefix: bool | None = None

    def __post_init__(self) -> None:
        if self.prefix is None:  # resolved here, so that `asyncsup check` shows what applies
            object.__setattr__(self, "prefix", self.mode == "console")


@dataclass(frozen=True)
class Program:
    name: str
    command: tuple[str, ...]
    numprocs: int = 1
    numprocs_start: int = 0
    process_name: str = ""  # template with {program} and {num}; "" = name, or name:num when numprocs > 1
    directory: Path | None = None
    environment: Mapping[str, str | None] = field(default_factory=dict)  # None = remove the variable
    user: str | None = None
    umask: int | None = None
    stdin: Literal["null", "inherit"] = "null"
    autostart: bool = True
    priority: int = 999
    startsecs: float = 1.0
    startretries: int | None = 3  # None = retry forever
    autorestart: AutoRestart = "always"
    exitcodes: frozenset[int] = frozenset({0})
    backoff: Backoff = Backoff()
    flap_limit: int = 10  # at most this many starts per flap_window, whatever the state; then back off
    flap_window: float = 60.0
    critical: bool = False
    restart_on_deploy: bool = False  # `asyncsup ctl stop-workers` (SIGUSR2) restarts it, one copy at a time
    depends_on: tuple[str, ...] = ()
    ready: Ready | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    forward_signals: frozenset[signal.Signals] = frozenset()
    redirect_stderr: bool = False
    stdout: Output = Output()
    stderr: Output = Output()

    def process_names(self) -> list[str]:
        """The names of this program's processes, in process_num order."""
        template = self.process_name or ("{program}:{num}" if self.numprocs > 1 else "{program}")
        nums = range(self.numprocs_start, self.numprocs_start + self.numprocs)
        return [template.format(program=self.name, num=n) for n in nums]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed message is retried before it goes to the failure transport."""

    max_retries: int = 3
    delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1


@dataclass(frozen=True)
class Consumer:
    """One [consumers.NAME] table: which queues, which handlers, how many at once, which limits."""

    name: str
    transports: tuple[str, ...]  # names from [transports], in priority order
    handlers: tuple[str, ...]  # importable module names whose @handler functions are registered
    concurrency: int = 16
    prefetch: int = 0  # messages received ahead of a free slot; 0 = auto (consumer/prefetch.py)
    lease: float = 30.0  # a received message is invisible to others this long, extended while handled
    failure_transport: str | None = None
    retry: RetryPolicy = RetryPolicy()
    limit: int = 0  # messages; 0 = none
    time_limit: float = 0.0  # seconds; 0 = none
    memory_limit: int = 0  # bytes of RSS; 0 = none
    failure_limit: int = 0  # failed messages; 0 = none
    processes: int = 0  # 0 = inline in `asyncsup run`; N = N supervised `asyncsup consume` children

    @property
    def transports_used(self) -> tuple[str, ...]:
        """The transports it reads, in priority order, then its failure transport (if any)."""
        return (*self.transports, *filter(None, [self.failure_transport]))


@dataclass(frozen=True)
class Settings:
    """The [asyncsup] table."""

    shutdown_timeout: float = 30.0
    control_socket: Path | None = None
    log_format: LogFormat = "text"
    log_level: str = "info"


@dataclass(frozen=True)
class Http:
    """The [http] table: /healthz, /readyz and /metrics, served only when `listen` is set."""

    listen: tuple[str, int] | None = None  # port 0 = any free port (logged)
    allow_remote: bool = False  # a non-loopback `listen` is refused unless this is true


@dataclass(frozen=True)
class Config:
    file: Path
    settings: Settings = Settings()
    http: Http = Http()
    programs: Mapping[str, Program] = field(default_factory=dict)
    transports: Mapping[str, str] = field(default_factory=dict)
    consumers: Mapping[str, Consumer] = field(default_factory=dict)

    @property
    def failure_transports(self) -> set[str]:
        """The transports some consumer sends the messages it cannot handle to."""
        return {c.failure_transport for c in self.consumers.values() if c.failure_transport}


# -- loading ----------------------------------------------------------------------------------


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file. `environ` (default os.environ) is what ${VAR} refers to."""
    file = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"invalid TOML: {exc}") from None
    return parse_config(data, Path(path), environ=environ)


def parse_config(data: Mapping[str, Any], file: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed TOML; relative paths are taken from `file`'s folder.

    The folder is not resolved through symlinks: a Kubernetes ConfigMap mounts the file as a
    symlink into a hidden `..data` folder, and paths are meant relative to where it appears.
    """
    absolute = Path(os.path.abspath(file))
    source = Source(str(file), absolute.parent, os.environ if environ is None else environ)
    # Imported here because the schema builds the dataclasses above: a cycle at import time.
    from asyncsup.config_schema import build_config

    return build_config(Value(data, "", source), absolute)


# -- describe ---------------------------------------------------------------------------------


def describe(config: Config) -> dict[str, Any]:
    """The resolved config as JSON-able data (`asyncsup check`): durations in seconds, sizes
    in bytes, signals by name, paths as strings, startretries null = forever."""
    programs = {
        name: {**_plain(program), "process_names": program.process_names()}
        for name, program in config.programs.items()
    }
    return {
        "file": str(config.file),
        "asyncsup": _plain(config.settings),
        "http": _plain(config.http),
        "programs": programs,
        "transports": dict(config.transports),
        "consumers": {name: _plain(consumer) for name, consumer in config.consumers.items()},
    }


def _plain(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {key: _plain(item) for key, item in pairs if key != "name"}
    if isinstance(value, signal.Signals):
        return value.name
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value
