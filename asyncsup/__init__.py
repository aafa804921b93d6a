"""asyncsup: one process for a container: supervise programs as PID 1, consume queues.

The public API, for handler modules and for programs that send messages::

    from asyncsup import handler, upcaster, send, Retry, Reject

Names are imported on first use (PEP 562), so `asyncsup run` with no consumer does not pay for
the consumer's imports at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from asyncsup._version import __version__
from asyncsup.errors import (
    AsyncsupError,
    ConfigError,
    DecodeError,
    HandlerOutcome,
    MessageError,
    NewerVersion,
    NoHandler,
    Reject,
    Retry,
    TransportError,
    UpcasterFailed,
    VersionGap,
)

if TYPE_CHECKING:
    from asyncsup.consumer.envelope import Envelope
    from asyncsup.consumer.handlers import HandlerRegistry, handler
    from asyncsup.consumer.send import Sender, send, send_batch
    from asyncsup.consumer.versions import upcaster

_LAZY = {
    "Envelope": "asyncsup.consumer.envelope",
    "HandlerRegistry": "asyncsup.consumer.handlers",
    "handler": "asyncsup.consumer.handlers",
    "Sender": "asyncsup.consumer.send",
    "send": "asyncsup.consumer.send",
    "send_batch": "asyncsup.consumer.send",
    "upcaster": "asyncsup.consumer.versions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncsup' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncsupError",
    "ConfigError",
    "DecodeError",
    "Envelope",
    "HandlerOutcome",
    "HandlerRegistry",
    "MessageError",
    "NewerVersion",
    "NoHandler",
    "Reject",
    "Retry",
    "Sender",
    "TransportError",
    "UpcasterFailed",
    "VersionGap",
    "__version__",
    "handler",
    "send",
    "send_batch",
    "upcaster",
]
