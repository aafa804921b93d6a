"""One shutdown for the whole process: phases, one deadline, a reason and an exit code.

The order matters, and every part of asyncsup follows it (DESIGN.md):

1. *Requested*: mark not ready; consumers stop receiving, the supervisor stops restarting.
   Stopping intake first is what makes the rest finite: nothing new can start while we drain.
2. *Draining*, concurrently, under the one ``shutdown_timeout``: in-flight handlers finish and
   ack; prefetched messages that never started go back to their queue at once (no attempt
   counted, so a redeploy never burns retries); children get their stop signal in reverse start
   order, dependents first, because a dependent may still need what it depends on to stop cleanly.
3. *Forced*, at the deadline or on a second signal: handlers are cancelled (their messages stay
   unacked and come back after the lease: at-least-once, never lost), remaining children and
   their process groups get SIGKILL.
4. *Closing*: transports close last, because acks need the connection; then the control socket
   goes and logs are flushed. The exit code is 0, or the code of a ``critical`` program that failed.
"""

from __future__ import annotations

import math

import anyio

from ._aio import Flag


class Shutdown:
    """The process-wide stop request: who asked, why, with which exit code, and by when.

    ``request()`` starts a graceful drain; a second ``request()`` (or the deadline) forces.
    Parts wait on ``wait_requested()`` to stop intake and on ``wait_forced()`` to stop waiting.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reason = ""
        self.exit_code = 0
        self.deadline = math.inf
        # Flags, not events: every child waits on them beside its own (wait_any, no task each).
        self.requested_flag = Flag()
        self.forced_flag = Flag()

    def __repr__(self) -> str:
        if self.forced_flag.is_set():
            state = f"forced ({self.reason})"
        elif self.requested_flag.is_set():
            state = f"draining ({self.reason}), deadline in {self.remaining():.1f}s"
        else:
            state = "not requested"
        return f"<Shutdown {state}, exit code {self.exit_code}>"

    @property
    def requested(self) -> bool:
        return self.requested_flag.is_set()

    @property
    def forced(self) -> bool:
        return self.forced_flag.is_set()

    def request(self, reason: str, exit_code: int | None = None) -> None:
        """Begin the graceful drain; when already draining, force instead (a second signal)."""
        if self.requested_flag.is_set():
            self.force(f"{reason} again")
            return
        self.reason = reason
        if exit_code is not None:
            self.exit_code = exit_code
        self.deadline = anyio.current_time() + self.timeout
        self.requested_flag.set()

    def force(self, reason: str) -> None:
        """Stop waiting for anything: cancel handlers, SIGKILL children."""
        if not self.requested_flag.is_set():
            self.request(reason)
        if not self.forced_flag.is_set():
            self.reason = f"{self.reason}; forced: {reason}" if self.reason else reason
            self.forced_flag.set()

    def remaining(self) -> float:
        """Seconds left before the drain deadline (inf before a request, 0 once forced)."""
        if self.forced_flag.is_set():
            return 0.0
        return max(0.0, self.deadline - anyio.current_time())

    async def wait_requested(self) -> None:
        await self.requested_flag.wait()

    async def wait_forced(self) -> None:
        await self.forced_flag.wait()

    async def enforce_deadline(self) -> None:
        """Run in the root task group: force the shutdown when the drain deadline passes."""
        await self.requested_flag.wait()
        with anyio.move_on_after(self.remaining()):
            await self.forced_flag.wait()
        if not self.forced_flag.is_set():
            self.exit_code = self.exit_code or 1  # work was cut short: not a clean stop
            self.force(f"shutdown_timeout of {self.timeout:g}s reached")
