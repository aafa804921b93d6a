"""Configuration: TOML -> frozen dataclasses, validated strictly.

Every key has a default; every error names the file, the key path and what was expected;
unknown keys are errors with a "did you mean". Nothing starts on a bad config.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    prefetch: int = 0  # messages received ahead of a free slot; 0 = as many as concurrency
    lease: float = 30.0  # a received message is invisible to others this long, extended while handled
    failure_transport: str | None = None
    retry: RetryPolicy = RetryPolicy()
    limit: int = 0  # messages; 0 = none
    time_limit: float = 0.0  # seconds; 0 = none
    memory_limit: int = 0  # bytes of RSS; 0 = none
    failure_limit: int = 0  # failed messages; 0 = none
    processes: int = 0  # 0 = inline in `asyncsup run`; N = N supervised `asyncsup consume` children


@dataclass(frozen=True)
class Settings:
    """The [asyncsup] table."""

    shutdown_timeout: float = 30.0
    control_socket: Path | None = None
    log_format: LogFormat = "text"
    log_level: str = "info"


@dataclass(frozen=True)
class Config:
    file: Path
    settings: Settings = Settings()
    programs: Mapping[str, Program] = field(default_factory=dict)
    transports: Mapping[str, str] = field(default_factory=dict)
    consumers: Mapping[str, Consumer] = field(default_factory=dict)
