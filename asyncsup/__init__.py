"""asyncsup: one process for a container: supervise programs as PID 1, consume queues.

The public API, for handler modules and for programs that send messages::

    from asyncsup import handler, send, Retry, Reject
"""

from asyncsup._version import __version__
from asyncsup.consumer.envelope import Envelope
from asyncsup.consumer.handlers import HandlerRegistry, handler
from asyncsup.consumer.send import Sender, send, send_batch
from asyncsup.errors import (
    AsyncsupError,
    ConfigError,
    DecodeError,
    HandlerOutcome,
    MessageError,
    NoHandler,
    Reject,
    Retry,
    TransportError,
)

__all__ = [
    "AsyncsupError",
    "ConfigError",
    "DecodeError",
    "Envelope",
    "HandlerOutcome",
    "HandlerRegistry",
    "MessageError",
    "NoHandler",
    "Reject",
    "Retry",
    "Sender",
    "TransportError",
    "__version__",
    "handler",
    "send",
    "send_batch",
]
