"""What the Redis transport hands out for stream entries it did not write: Symfony's, and strangers'.

Our own entries carry the envelope bytes in the field ``m`` (short, and distinct from Symfony's
``message``, so neither side mistakes the other's entries for its own format).

With ``format=symfony`` an entry with a ``message`` field is a Symfony Messenger message:
``{"body": "<string>", "headers": {"type": "App\\Message\\Foo", ...}}``, possibly wrapped by
phpredis's PHP serializer as ``s:<len>:"...";``. It is turned into our envelope::

    {"id": "redis-<entry id>", "type": <headers.type>, "version": 1,
     "body": <body parsed as JSON, or the body string as is when it is not JSON>,
     "headers": {"attempt": <RedeliveryStamp retryCount + 1>, "sent_at": <entry time>,
                 "symfony": {<the original headers>}}}

A message Symfony cannot describe (no ``type``: the default PhpSerializer hides it inside a PHP
``serialize()`` string) or bytes that are not that JSON are handed out unchanged: the consumer
fails to decode them and sends them to the failure queue with the reason, instead of leaving them
pending forever (what Symfony itself does with an entry it cannot decode).

Without ``format=symfony``, a ``message`` field is taken to hold our envelope (a producer that
writes Symfony's field name with our format). An entry with neither field is handed out as a JSON
object of its fields (bytes as latin-1), which is not an envelope: the failure queue again.
"""

from __future__ import annotations

import json
from typing import Any

try:  # the consumer's wire format, when it is installed alongside
    from asyncsup.consumer.envelope import Envelope, encode
except ImportError:  # pragma: no cover - only when the consumer package is absent
    Envelope = None  # type: ignore[assignment,misc]
    encode = None  # type: ignore[assignment]

FIELD = b"m"
SYMFONY_FIELD = b"message"
REDELIVERY_STAMP = "X-Message-Stamp-Symfony\\Component\\Messenger\\Stamp\\RedeliveryStamp"


def foreign(kind: int, data: Any, entry_id: str, symfony: bool) -> bytes:
    """The bytes to hand out for an entry without our ``m`` field (kind 1: ``message``, 2: other)."""
    if kind == 1:
        return from_symfony(data, entry_id) if symfony else bytes(data)
    fields = [bytes(f).decode("latin-1") for f in data]
    return json.dumps(dict(zip(fields[::2], fields[1::2], strict=False))).encode()


def from_symfony(raw: bytes, entry_id: str) -> bytes:
    """Our envelope for a Symfony entry's ``message`` value; the raw bytes when it is not one."""
    try:
        message = json.loads(_php_unwrap(raw))
        headers = message["headers"] or {}  # PHP writes an empty map as []
        message_type = headers["type"]
        body_text = message["body"]
    except (ValueError, KeyError, TypeError):
        return raw
    if not isinstance(message_type, str) or not isinstance(body_text, str):
        return raw
    head = {
        "attempt": _retry_count(headers) + 1,
        "sent_at": int(entry_id.partition("-")[0]) / 1000,
        "symfony": headers,
    }
    return _envelope(f"redis-{entry_id}", message_type, _json_or_text(body_text), head)


def _php_unwrap(raw: bytes) -> bytes:
    """phpredis's default serializer writes a string as s:<len>:"<bytes>"; — take the bytes."""
    if raw.startswith(b"s:") and raw.endswith(b'";'):
        size, sep, rest = raw[2:].partition(b':"')
        if sep and size.isdigit() and len(rest) == int(size) + 2:
            return rest[:-2]
    return raw


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _retry_count(headers: dict[str, Any]) -> int:
    """Symfony's RedeliveryStamp header: a JSON list of stamps, the last one is current."""
    try:
        stamps = json.loads(headers.get(REDELIVERY_STAMP) or "[]")
        count = stamps[-1]["retryCount"] if stamps else 0
    except (ValueError, KeyError, TypeError, IndexError):
        return 0
    return count if isinstance(count, int) and count >= 0 else 0


def _envelope(message_id: str, message_type: str, body: Any, headers: dict[str, Any]) -> bytes:
    if encode is not None and Envelope is not None:
        return encode(Envelope(message_id, message_type, body, 1, headers))
    fields = {"id": message_id, "type": message_type, "version": 1, "body": body, "headers": headers}
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
