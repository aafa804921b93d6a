"""The wire format: one JSON envelope around every message body.

    {"id": "…", "type": "ResizeImage", "version": 1, "body": {…},
     "headers": {"attempt": 1, "sent_at": 1790000000.123, …}}

``type`` picks the handler, ``body`` is decoded by the handler's annotated type (bodies.py),
``headers.attempt`` counts handler attempts (1 = first try; a retry re-sends with attempt + 1).
Anything that is not such an envelope is a DecodeError: the consumer sends it to the failure
queue with the reason, it never crashes on it and never drops it.

msgspec's JSON codec is used when installed (about 8x faster than the stdlib); both produce and
accept the same bytes. With msgspec, ``decode`` first tries a typed decode that parses and checks
the whole envelope in one C call (0.75 µs instead of 1.2); anything that typed decode refuses goes
through the generic path, so what is accepted and every error message are the same either way.
The consumer goes one step further where it can (``split_fast``, HandlerRegistry.decode_fast): it
leaves the body as JSON bytes for the handler's body type to decode straight from them, and makes
an Envelope only where something reads it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol

from asyncsup.errors import DecodeError

_loads: Callable[[bytes], Any]
_dumps: Callable[[Any], bytes]
_codec_errors: tuple[type[Exception], ...]

try:
    import msgspec  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _codec_errors = (ValueError, RecursionError)
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        # ensure_ascii: lone surrogates (which json.loads accepts) come out as \u escapes, not
        # as a UnicodeEncodeError; what decoded must always encode again.
        return json.dumps(obj, separators=(",", ":")).encode()

else:
    _codec_errors = (ValueError, RecursionError, msgspec.DecodeError)
    _loads = msgspec.json.decode
    _dumps = msgspec.json.encode

_encode_errors = (TypeError, OverflowError, *_codec_errors)

ENVELOPE_KEYS = frozenset({"id", "type", "version", "body", "headers"})


class Envelope:
    """One message as it travels: identity, type, body (plain JSON data) and headers.

    A received envelope may keep its body as the JSON bytes it came in (Head): the handler's body
    type was decoded from them directly, and ``body`` parses them only if something asks.
    """

    __slots__ = ("_body", "_json", "headers", "id", "type", "version")

    def __init__(
        self, id: str, type: str, body: Any, version: int = 1, headers: dict[str, Any] | None = None
    ) -> None:
        self.id = id
        self.type = type
        self._body = body
        self._json: Any = None  # the body as JSON bytes (msgspec.Raw), not parsed yet
        self.version = version
        self.headers: dict[str, Any] = {} if headers is None else headers

    def __repr__(self) -> str:
        return f"<Envelope {self.type} {self.id}, attempt {self.attempt}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return (self.id, self.type, self.version, self.headers, self.body) == (
            other.id, other.type, other.version, other.headers, other.body
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    @property
    def body(self) -> Any:
        if self._json is not None:  # valid JSON: see Head.envelope
            self._body, self._json = _loads(self._json), None
        return self._body

    @property
    def attempt(self) -> int:
        """Which handler attempt this delivery is (1 = first); garbage counts as 1."""
        value = self.headers.get("attempt", 1)
        return value if type(value) is int and value >= 1 else 1


class Head(Protocol):
    """An envelope as split_fast leaves it: checked, except its body, still JSON bytes."""

    type: str
    version: int
    body: Any  # msgspec.Raw: the body's JSON, skipped over, not checked

    def envelope(self) -> Envelope:
        """The Envelope, its body parsed only when read. Only once the handler's decoder accepted
        ``body``: until then nothing says those bytes are JSON at all."""
        ...


def _msgspec_decoders() -> tuple[Callable[[bytes], Envelope | None], Callable[[bytes], Head | None]] | None:
    """With msgspec: bytes -> Envelope in one call (or None for anything it does not accept),
    and bytes -> Head for split_fast."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - depends on the environment
        return None

    # msgspec is optional: where it is not installed mypy sees Any here (unused-ignore: where it is).
    class Wire(msgspec.Struct, forbid_unknown_fields=True):  # type: ignore[misc,call-arg,unused-ignore]
        id: str
        type: Annotated[str, msgspec.Meta(min_length=1)]
        body: Any
        headers: dict[str, Any]
        version: int = 1

    # gc=False: the collector need not track it (its only container, headers, holds parsed JSON).
    class RawHead(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # type: ignore[misc,call-arg,unused-ignore]
        id: str
        type: Annotated[str, msgspec.Meta(min_length=1)]
        body: msgspec.Raw  # skipped over, not parsed: the handler's own decoder parses it
        headers: dict[str, Any]
        version: int = 1

        def envelope(self) -> Envelope:
            envelope = Envelope(self.id, self.type, None, self.version, self.headers)
            envelope._json = self.body
            return envelope

    wire, head = msgspec.json.Decoder(Wire), msgspec.json.Decoder(RawHead)

    def typed(data: bytes) -> Envelope | None:
        try:
            w = wire.decode(data)
        except _codec_errors:  # decode() says precisely what is wrong
            return None
        return Envelope(w.id, w.type, w.body, w.version, w.headers)

    def split(data: bytes) -> Head | None:
        try:
            h: Head = head.decode(data)
        except _codec_errors:
            return None
        return h

    return typed, split


_typed, split_fast = _msgspec_decoders() or (None, None)
"""split_fast(data), with msgspec: the envelope's Head, or None, for a handler whose body type
decodes from JSON directly (HandlerRegistry.decode_fast)."""


def new_id() -> str:
    """A random 96-bit id in hex: unique enough, and 5x cheaper than uuid4()."""
    return os.urandom(12).hex()


def new_envelope(
    message_type: str,
    body: Any,
    *,
    headers: Mapping[str, Any] | None = None,
    version: int = 1,
) -> Envelope:
    """A fresh envelope for sending: attempt 1, sent now."""
    head: dict[str, Any] = {"attempt": 1, "sent_at": round(time.time(), 6)}
    if headers:
        head.update(headers)
    return Envelope(id=new_id(), type=message_type, body=body, version=version, headers=head)


def encode(envelope: Envelope) -> bytes:
    """The envelope as compact UTF-8 JSON bytes."""
    try:
        return _dumps(
            {
                "id": envelope.id,
                "type": envelope.type,
                "version": envelope.version,
                "body": envelope.body,
                "headers": envelope.headers,
            }
        )
    except _encode_errors as exc:
        raise DecodeError(f"message {envelope.type} cannot be encoded as JSON: {exc}") from exc


def decode(data: bytes) -> Envelope:
    """Parse and check envelope bytes; DecodeError says exactly what is wrong."""
    if _typed is not None:
        envelope = _typed(data)
        if envelope is not None:
            return envelope
    try:
        raw = _loads(data)
    except _codec_errors as exc:
        raise DecodeError(f"not a JSON envelope: {_short(exc)}") from exc
    if type(raw) is dict:  # the fast path: every check in one expression, no calls
        mid, kind, headers = raw.get("id"), raw.get("type"), raw.get("headers")
        version = raw.get("version", 1)
        if (
            type(mid) is str
            and type(kind) is str
            and kind
            and type(version) is int
            and type(headers) is dict
            and "body" in raw
            and raw.keys() <= ENVELOPE_KEYS
        ):
            return Envelope(mid, kind, raw["body"], version, headers)
    raise _what_is_wrong(raw)


def _what_is_wrong(raw: Any) -> DecodeError:
    """The precise reason bytes that parsed as JSON are not an envelope."""
    if type(raw) is not dict:
        return DecodeError(f"not a JSON envelope: top level is {type(raw).__name__}, not an object")
    for key in ("id", "type", "body", "headers"):
        if key not in raw:
            return DecodeError(f"envelope has no {key!r} key")
    if type(raw["id"]) is not str or type(raw["type"]) is not str or not raw["type"]:
        return DecodeError("envelope 'id' and 'type' must be non-empty strings")
    if type(raw.get("version", 1)) is not int:
        return DecodeError(f"envelope 'version' must be an integer, got {raw['version']!r}")
    if type(raw["headers"]) is not dict:
        return DecodeError("envelope 'headers' must be an object")
    unknown = sorted(raw.keys() - ENVELOPE_KEYS)
    return DecodeError(f"envelope has unknown keys: {', '.join(unknown)}")


def peek_type(data: bytes) -> str:
    """The message type of envelope bytes, or a placeholder when they do not decode (for logs)."""
    try:
        return decode(data).type
    except DecodeError:
        return "<undecodable>"


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"
