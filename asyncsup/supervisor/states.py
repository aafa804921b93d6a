"""The states of one supervised process (supervisord's model, which operators already know)."""

from __future__ import annotations

import enum


class State(enum.Enum):
    STOPPED = "STOPPED"  # stopped by request, or never started
    STARTING = "STARTING"  # spawned; waiting for startsecs and the ready check
    RUNNING = "RUNNING"  # up for startsecs and ready
    BACKOFF = "BACKOFF"  # failed while starting (or flapping); waiting to retry
    STOPPING = "STOPPING"  # stop signal sent; SIGKILL follows after stop_timeout
    EXITED = "EXITED"  # exited and the restart policy says to leave it
    FATAL = "FATAL"  # gave up after startretries

    def __str__(self) -> str:
        return self.value

    @property
    def is_up(self) -> bool:
        """A process exists (or is about to) in this state."""
        return self in (State.STARTING, State.RUNNING, State.STOPPING)

    @property
    def is_settled(self) -> bool:
        """Nothing will happen without a request: stopped, exited or fatal."""
        return self in (State.STOPPED, State.EXITED, State.FATAL)
