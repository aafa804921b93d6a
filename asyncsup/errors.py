"""Every error asyncsup raises on purpose, in one tree.

    AsyncsupError                      base: catch this to catch everything of ours
    ├── ConfigError                    a config file that cannot run; names file, key path, expectation
    ├── SpawnError                     a program's command could not be started (ENOENT, EACCES, ...)
    ├── UnknownProgram                 a name that matches no program
    ├── MissingExtra                   an optional dependency is not installed; names the pip command
    ├── ControlError                   the control plane failed: socket in use, cannot connect, bad request
    ├── TransportError                 a queue backend failed (driver errors are mapped to this)
    │   ├── TransportClosed            used after close()
    │   └── UnknownTransport           a URL scheme or transport name we do not know
    ├── MessageError                   one message cannot be handled; it goes to the failure queue
    │   ├── DecodeError                the bytes are not an envelope, or the body does not fit the type
    │   ├── NoHandler                  no handler is registered for the message type
    │   ├── VersionGap                 an older version with no chain of upcasters to the handler's
    │   ├── UpcasterFailed             an upcaster raised (its traceback goes with the message)
    │   └── NewerVersion               written by newer code: retried by the policy, then failed
    └── HandlerOutcome                 raised by a handler to steer its message (not a failure of ours)
        ├── Retry                      try again later (after=seconds), counting an attempt
        └── Reject                     do not retry: straight to the failure queue with the reason

Each exception builds its message from its arguments, so callers pass facts, not prose.
"""

from __future__ import annotations

from collections.abc import Iterable


class AsyncsupError(Exception):
    """Base of every error asyncsup raises on purpose."""


class ConfigError(AsyncsupError):
    """A config value that cannot run: `file: key.path: what was expected, got what`."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + problem)


class SpawnError(AsyncsupError):
    """The OS refused to start a program's command."""

    def __init__(self, process: str, argv0: str, reason: str, errno: int | None = None) -> None:
        self.process = process
        self.argv0 = argv0
        self.reason = reason
        self.errno = errno
        super().__init__(f"{process}: cannot start {argv0!r}: {reason}")


class UnknownProgram(AsyncsupError):
    """A program or process name that matches nothing."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"no program named {name!r} (known: {', '.join(self.known) or 'none'})")


class MissingExtra(AsyncsupError):
    """An optional dependency is missing; the message says how to install it."""

    def __init__(self, feature: str, extra: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs an extra: pip install 'asyncsup[{extra}]'")


class ControlError(AsyncsupError):
    """The control socket or a control request failed; `code` is the protocol's error code."""

    def __init__(self, problem: str, code: str = "failed") -> None:
        self.problem = problem
        self.code = code
        super().__init__(problem)


class TransportError(AsyncsupError):
    """A queue backend failed; the driver's exception is chained as __cause__."""


class TransportClosed(TransportError):
    """The transport was used after close()."""

    def __init__(self, url: str) -> None:
        super().__init__(f"transport {url} is closed")


class UnknownTransport(TransportError):
    """A URL scheme or a transport name nobody registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown transport {name!r} (known: {', '.join(self.known) or 'none'})")


class MessageError(AsyncsupError):
    """One message cannot be handled; the consumer sends it to the failure queue and goes on.

    Retrying cannot help (same bytes, same code), unless `retryable`: then another consumer, or
    this one after a deploy, may take it, and the retry policy gives it that time.
    """

    retryable = False


class DecodeError(MessageError):
    """The bytes are not a valid envelope, or the body does not fit the handler's type."""


class NoHandler(MessageError):
    """No handler is registered for a message type."""

    def __init__(self, message_type: str, known: Iterable[str]) -> None:
        self.message_type = message_type
        self.known = sorted(known)
        super().__init__(
            f"no handler for message type {message_type!r} (known: {', '.join(self.known) or 'none'})"
        )


class VersionGap(MessageError):
    """A message older than its handler, with no upcaster from one of the versions in between."""

    def __init__(
        self, message_type: str, version: int, current: int, missing: int, known: Iterable[int]
    ) -> None:
        self.message_type = message_type
        self.version = version
        self.current = current
        self.missing = missing
        self.known = sorted(known)
        steps = ", ".join(f"{v} -> {v + 1}" for v in self.known) or "none"
        super().__init__(
            f"{message_type} version {version} cannot be upgraded to this consumer's version {current}: "
            f"no upcaster from version {missing} (upcasters: {steps})"
        )


class UpcasterFailed(MessageError):
    """An upcaster raised; `error` is what it raised (its traceback is kept with the message)."""

    def __init__(self, message_type: str, from_version: int, upcaster: str, error: Exception) -> None:
        self.message_type = message_type
        self.from_version = from_version
        self.upcaster = upcaster
        self.error = error
        text = str(error)
        raised = f"{type(error).__name__}: {text}" if text else type(error).__name__
        super().__init__(
            f"upcaster {upcaster} ({message_type} version {from_version} -> {from_version + 1}) "
            f"raised {raised}"
        )


class NewerVersion(MessageError):
    """A message written by newer code (a rolling deploy): retried, as a newer consumer may take it."""

    retryable = True

    def __init__(self, message_type: str, version: int, current: int) -> None:
        self.message_type = message_type
        self.version = version
        self.current = current
        super().__init__(f"{message_type} version {version} is newer than this consumer's {current}")


class HandlerOutcome(AsyncsupError):
    """Raised by a handler to say what should become of its message."""


class Retry(HandlerOutcome):
    """Retry this message later; counts as an attempt and obeys max_retries."""

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        self.after = after
        self.reason = reason
        when = f" after {after:g}s" if after is not None else ""
        super().__init__(f"retry requested{when}" + (f": {reason}" if reason else ""))


class Reject(HandlerOutcome):
    """Do not retry: send the message to the failure queue with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"rejected: {reason}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a close choice exists, else an empty string."""
    import difflib  # only when a name is wrong: not on every start

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
