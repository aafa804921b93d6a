"""What becomes of a message whose handler failed: retry later, or the failure queue.

Attempts are counted in the envelope (``headers.attempt``, 1 = first try), so they survive restarts
and travel with the message. A retry is a re-send of the same envelope with attempt + 1 after a
delay (like Symfony's MultiplierRetryStrategy): ``delay * multiplier**(attempt-1)``, +- jitter,
capped at ``max_delay``. After ``max_retries`` retries the message goes to the failure transport
with the reason in its headers.

Redeliveries without an outcome are bounded too: a message whose handler kills the process (OOM,
segfault, kill -9) is never acked nor retried, it just comes back after its lease. The transport
counts those receives (``Delivery.deliveries``); once a message was received more than
``attempt + MAX_UNSETTLED_DELIVERIES`` times it is sent to the failure queue without being handled
again, so a poison message cannot crash-loop a consumer forever.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from asyncsup.config import RetryPolicy
from asyncsup.errors import HandlerOutcome, MessageError, Reject, Retry, UpcasterFailed

MAX_UNSETTLED_DELIVERIES = 3  # receives with no outcome (consumer died) tolerated per attempt
TRACEBACK_LIMIT = 8_000  # characters kept from the end of a traceback in the failure headers
ERROR_LIMIT = 1_000  # characters kept of an error message


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one failed attempt: retry after `delay` seconds, or fail for good."""

    action: Literal["retry", "fail"]
    delay: float
    reason: str

    def __repr__(self) -> str:
        if self.action == "retry":
            return f"<Verdict retry in {self.delay:.3g}s: {self.reason}>"
        return f"<Verdict fail: {self.reason}>"


def retry_delay(
    policy: RetryPolicy, attempt: int, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retrying after failed attempt number `attempt` (1-based)."""
    base = policy.delay * policy.multiplier ** max(0, attempt - 1)
    if policy.jitter:
        base *= 1.0 + policy.jitter * (2.0 * rand() - 1.0)  # +- jitter: a fleet does not sync up
    if policy.max_delay > 0:
        base = min(base, policy.max_delay)
    return max(0.0, base)


def decide(
    policy: RetryPolicy, attempt: int, exc: BaseException, rand: Callable[[], float] = random.random
) -> Verdict:
    """Retry or fail, from the policy, the attempt that just failed and what was raised."""
    reason = describe(exc)
    if isinstance(exc, Reject) or (isinstance(exc, MessageError) and not exc.retryable):
        return Verdict("fail", 0.0, reason)  # retrying cannot help: same bytes, same code
    if attempt > policy.max_retries:
        return Verdict("fail", 0.0, f"{reason} (gave up after {attempt} attempts)")
    if isinstance(exc, Retry) and exc.after is not None:
        return Verdict("retry", max(0.0, exc.after), reason)
    return Verdict("retry", retry_delay(policy, attempt, rand), reason)


def describe(exc: BaseException) -> str:
    """`Type: message`, short enough for a log line."""
    if isinstance(exc, (HandlerOutcome, MessageError)):
        return _cut(str(exc), ERROR_LIMIT)
    text = str(exc)
    return _cut(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, ERROR_LIMIT)


def failure_headers(
    exc: BaseException | None, reason: str, *, attempts: int, origin: str
) -> dict[str, Any]:
    """The headers a message carries in the failure queue: why, when, from where, after how many."""
    headers: dict[str, Any] = {
        "error": _cut(reason, ERROR_LIMIT),
        "error_type": _qualified_type(exc) if exc is not None else "",
        "attempts": attempts,
        "origin": origin,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    raised = _user_error(exc)
    if raised is not None:
        text = "".join(traceback.format_exception(type(raised), raised, raised.__traceback__))
        headers["traceback"] = text if len(text) <= TRACEBACK_LIMIT else "…" + text[-TRACEBACK_LIMIT:]
    return headers


def unsettled_error(deliveries: int, attempt: int) -> MessageError:
    """A message received `deliveries` times for one attempt: its consumer died each time."""
    return MessageError(
        f"received {deliveries} times for attempt {attempt} without an outcome: "
        "the consumer probably died while handling it (poison message)"
    )


def _user_error(exc: BaseException | None) -> BaseException | None:
    """The exception whose traceback helps: the application's, never one of our verdicts."""
    if isinstance(exc, UpcasterFailed):
        return exc.error
    if exc is None or isinstance(exc, (HandlerOutcome, MessageError)):
        return None
    return exc


def _qualified_type(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
