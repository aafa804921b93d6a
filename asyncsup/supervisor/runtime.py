"""What every supervised process shares: where output goes, who reaps orphans, when we stop."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import Output
from ..lifecycle import Shutdown
from .output import LineSink, RotatingFile


class ChildTracker(Protocol):
    """The reaper's view of our own children (asyncsup/reaper.py), so it never steals their status."""

    def spawning(self) -> contextlib.AbstractContextManager[None]: ...
    def own(self, pid: int) -> None: ...
    def disown(self, pid: int) -> None: ...
    def kick(self) -> None: ...


class NoReaper:
    """Used when nobody else's orphans are ours to reap (not PID 1, not a subreaper, or shimmed)."""

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        yield

    def own(self, pid: int) -> None:
        pass

    def disown(self, pid: int) -> None:
        pass

    def kick(self) -> None:
        pass


@dataclass
class Runtime:
    shutdown: Shutdown
    stdout: LineSink
    stderr: LineSink
    json_lines: bool = False
    reaper: ChildTracker = field(default_factory=NoReaper)
    # What every child's environment starts from: ours, read once (os.environ decodes every
    # variable on each read, 20 us a spawn), so later changes by in-process code do not leak.
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _files: dict[Path, tuple[LineSink, RotatingFile]] = field(default_factory=dict)

    def sink_for(self, output: Output, console: LineSink) -> LineSink | None:
        """The sink an Output names; file sinks are shared by every process writing that file."""
        if output.mode == "off":
            return None
        if output.mode == "console" or output.file is None:
            return console
        if output.file not in self._files:
            target = RotatingFile(output.file, output.max_bytes, output.backups)
            self._files[output.file] = (LineSink(str(output.file), target.write_chunks), target)
        return self._files[output.file][0]

    def reopen_logs(self) -> int:
        """Reopen every log file (SIGUSR1, after logrotate renamed them); returns how many."""
        for sink, target in self._files.values():
            sink.call_in_writer(target.reopen)
        return len(self._files)

    def close(self) -> None:
        for sink, target in self._files.values():
            sink.close()
            target.close()
        self._files.clear()
