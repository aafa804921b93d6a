"""Versioned message bodies: what version a message type is at, and upcasters that upgrade old bodies.

A deploy that changes a body's shape meets messages the old code wrote, still queued. So a type's
current version is declared with its handler (``@handler(version=2)``, or ``__version__ = 2`` on the
body class, which senders also read), every envelope carries the version it was written at, and an
upcaster turns a body of version N into version N + 1::

    @upcaster("ResizeImage", from_version=1)
    def resize_v1(body: dict) -> dict:
        return {"image_id": body["image_id"], "size": {"width": body.pop("width", 800)}}

The worker applies the chain N -> N+1 -> ... -> current before the body is decoded into the handler's
type; a message already at the current version costs one integer comparison. An older message with
a missing step is a VersionGap (failure queue), a newer one a NewerVersion (retried: a consumer with
the newer code may take it), an upcaster that raises an UpcasterFailed (failure queue, traceback kept).
Upcasters run on the event loop: they must be plain, quick functions of the JSON data.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asyncsup.errors import NewerVersion, UpcasterFailed, VersionGap

F = TypeVar("F", bound=Callable[..., Any])
Upcast = Callable[[Any], Any]

MARK = "__asyncsup_upcaster__"
VERSION_ATTRIBUTE = "__version__"  # on a body class: the version its instances are sent at


@dataclass(frozen=True, slots=True)
class UpcasterMark:
    """What @upcaster stores on a function: it upgrades `message_type` bodies from `from_version`."""

    message_type: str
    from_version: int


def upcaster(message_type: str, *, from_version: int) -> Callable[[F], F]:
    """Mark a function as the upgrade of `message_type` bodies from `from_version` to the next.

    It takes the body as JSON data (a copy: changing it in place is fine) and returns the body as
    version ``from_version + 1`` wants it. The registry of each consumer whose handler modules
    define it picks it up, like a handler.
    """
    if not isinstance(message_type, str) or not message_type:
        raise TypeError(f"@upcaster takes a message type name, got {message_type!r}")
    check_version(from_version, "@upcaster from_version")

    def mark(func: F) -> F:
        if inspect.iscoroutinefunction(func) or not callable(func):
            raise TypeError(f"@upcaster needs a plain function of the body, got {func!r}")
        setattr(func, MARK, UpcasterMark(message_type, from_version))
        return func

    return mark


def check_version(value: object, what: str) -> int:
    if type(value) is not int or value < 1:
        raise TypeError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def declared_version(cls: Any) -> int | None:
    """A body class's ``__version__`` (a plain class attribute), or None when it has none."""
    value = getattr(cls, VERSION_ATTRIBUTE, None) if isinstance(cls, type) else None
    if value is None:
        return None
    return check_version(value, f"{getattr(cls, '__qualname__', cls)}.{VERSION_ATTRIBUTE}")


def version_of(message: Any) -> int:
    """The version a message object is sent at: its class's ``__version__``, else 1."""
    return declared_version(type(message)) or 1


class Upcasters:
    """Message type -> {from_version: upcaster}, for one consumer (its HandlerRegistry owns one)."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Upcast]] = {}

    def __repr__(self) -> str:
        chains = ", ".join(f"{t} {sorted(s)}" for t, s in sorted(self._steps.items()))
        return f"<Upcasters {chains or 'none'}>"

    def add(self, func: Upcast, message_type: str, from_version: int) -> Upcast | None:
        """Register one step; returns the step already registered for that version, if another."""
        steps = self._steps.setdefault(message_type, {})
        existing = steps.get(from_version)
        if existing is not None and existing is not func:
            return existing
        steps[from_version] = func
        return None

    def highest(self, message_type: str) -> int:
        """The highest version an upcaster of this type upgrades from (0 when there are none)."""
        return max(self._steps.get(message_type, ()), default=0)

    def upgrade(self, message_type: str, body: Any, version: int, current: int) -> Any:
        """`body`, written at `version`, as version `current` wants it (the original is left as is)."""
        if version > current:
            raise NewerVersion(message_type, version, current)
        steps = self._steps.get(message_type, {})
        for step in range(version, current):  # the whole path first: no upcaster runs for nothing
            if step not in steps:
                raise VersionGap(message_type, version, current, step, steps)
        body = copy.deepcopy(body)  # a retry or the failure queue re-sends the body as it was written
        for step in range(version, current):
            func = steps[step]
            try:
                body = func(body)
            except Exception as exc:
                raise UpcasterFailed(message_type, step, _name(func), exc) from exc
        return body


def _name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
