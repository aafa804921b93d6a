"""How a process ended, in the words an operator would use."""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class ExitStatus:
    """An exit code, a signal, or a spawn failure (errno), never more than one."""

    code: int | None = None
    signal: int | None = None
    spawn_errno: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        return cls(signal=-returncode) if returncode < 0 else cls(code=returncode)

    def __str__(self) -> str:
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)}"
        if self.spawn_errno is not None:
            return f"could not start: {errno.errorcode.get(self.spawn_errno, self.spawn_errno)}"
        return f"exit {self.code}"

    @property
    def shell_code(self) -> int:
        """The code a shell would report: the exit code, 128+N for signal N, 127/126 for spawn errors."""
        if self.signal is not None:
            return 128 + self.signal
        if self.spawn_errno is not None:
            return 127 if self.spawn_errno == errno.ENOENT else 126
        return self.code or 0


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
