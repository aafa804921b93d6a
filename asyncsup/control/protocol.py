"""The control protocol: JSON lines over the unix socket; one request per line, many per connection.

    request   {"v": 1, "cmd": "status", "args": {"names": ["web"]}}
    reply     {"ok": true, "result": {...}}
          or  {"ok": false, "error": "no program named 'x' (known: web)", "code": "unknown_name"}
    stream    a reply with "more": true is followed by events {"data": "...", "lost": 0}
              until the client closes the connection (`tail -f`)

The version is checked, not guessed at: `asyncsup ctl` and the server can come from different installs
(a `docker exec` into a container built from an older image), and a clear refusal beats a
misunderstood request. Everything here is pure (bytes in, values out), so it is tested without a socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ControlError

VERSION = 1
MAX_REQUEST = 64 * 1024  # a request is a command and a few names; anything longer is a mistake

# Error codes: stable strings a script can test, unlike the messages.
BAD_REQUEST = "bad_request"  # not a JSON object with "v", "cmd" and "args"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_COMMAND = "unknown_command"
BAD_ARGUMENTS = "bad_arguments"  # the command exists, its arguments do not fit
UNKNOWN_NAME = "unknown_name"  # no program or process by that name
SHUTTING_DOWN = "shutting_down"  # refused because the shutdown has begun
NOT_ALLOWED = "not_allowed"  # the peer's uid may not control this asyncsup
INTERNAL = "internal"  # a bug of ours; the server logged the traceback


@dataclass(frozen=True)
class Request:
    cmd: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    ok: bool
    result: Any = None
    error: str = ""
    code: str = ""
    more: bool = False  # events follow (a stream)

    @classmethod
    def failure(cls, exc: ControlError) -> Reply:
        return cls(ok=False, error=exc.problem, code=exc.code)


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise ControlError(f"{what} is not valid JSON: {line[:80]!r}", BAD_REQUEST) from None
    if not isinstance(obj, dict):
        raise ControlError(f"{what} is not a JSON object: {line[:80]!r}", BAD_REQUEST)
    return obj


def encode_request(cmd: str, args: Mapping[str, Any] | None = None) -> bytes:
    return _line({"v": VERSION, "cmd": cmd, "args": dict(args or {})})


def decode_request(line: bytes) -> Request:
    """A Request, or ControlError with the code to answer (bad_request, unsupported_version)."""
    obj = _object(line, "the request")
    version = obj.get("v")
    if version != VERSION:
        raise ControlError(
            f"protocol version {version!r} is not supported (this asyncsup speaks {VERSION}); "
            "use the asyncsup ctl of the same install",
            UNSUPPORTED_VERSION,
        )
    cmd, args = obj.get("cmd"), obj.get("args", {})
    if not isinstance(cmd, str) or not cmd:
        raise ControlError('the request has no "cmd" string', BAD_REQUEST)
    if not isinstance(args, dict):
        raise ControlError('"args" must be a JSON object', BAD_REQUEST)
    return Request(cmd, args)


def encode_reply(reply: Reply) -> bytes:
    if not reply.ok:
        return _line({"ok": False, "error": reply.error, "code": reply.code})
    obj: dict[str, Any] = {"ok": True, "result": reply.result}
    if reply.more:
        obj["more"] = True
    return _line(obj)


def decode_reply(line: bytes) -> Reply:
    obj = _object(line, "the reply")
    if obj.get("ok") is True:
        return Reply(ok=True, result=obj.get("result"), more=obj.get("more") is True)
    return Reply(ok=False, error=str(obj.get("error", "no error message")), code=str(obj.get("code", "")))


def encode_event(data: str, lost: int = 0) -> bytes:
    return _line({"data": data, "lost": lost})


def decode_event(line: bytes) -> tuple[str, int]:
    """(data, bytes lost before it) of one stream event."""
    obj = _object(line, "the event")
    data, lost = obj.get("data"), obj.get("lost", 0)
    if not isinstance(data, str) or not isinstance(lost, int):
        raise ControlError(f"not a stream event: {line[:80]!r}", BAD_REQUEST)
    return data, lost
