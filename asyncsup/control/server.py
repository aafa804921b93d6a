"""The control socket: a unix socket, mode 0600, speaking JSON lines (protocol.py).

Binding: a socket file left by a crashed run refuses connections, so it is replaced; one that accepts
them belongs to a live asyncsup, and starting a second one on it is an error. The new socket is bound
under a temporary name, made 0600, then renamed into place: there is never a moment when it exists at
its path with a looser mode, and we never touch the process umask (other threads create files).
Access: only our own uid and root may connect; the mode enforces it and SO_PEERCRED checks it again,
in case someone loosens the file's mode.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from .._aio import race
from ..errors import AsyncsupError, ControlError
from .commands import Commands, TailFollow
from .protocol import (
    BAD_REQUEST,
    INTERNAL,
    MAX_REQUEST,
    NOT_ALLOWED,
    Reply,
    decode_request,
    encode_reply,
)

log = logging.getLogger("asyncsup.control")

REFUSAL_WAIT = 10.0  # seconds a refused peer has to send its first request and read the refusal

# What a client that went away looks like; its connection just ends.
GONE = (
    anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, anyio.IncompleteRead, OSError
)


class ControlServer:
    def __init__(self, path: Path, commands: Commands, *, explicit: bool) -> None:
        self.path = path
        self.commands = commands
        self.explicit = explicit  # configured (an error if unusable) rather than the default (a warning)
        self._listener: SocketListener | None = None
        self._inode: int | None = None

    def __repr__(self) -> str:
        state = "listening" if self._listener is not None else "not listening"
        return f"<ControlServer {self.path}: {state}>"

    async def open(self) -> None:
        """Bind the socket; ControlError if another asyncsup uses it (or a configured path is unusable)."""
        try:
            self._listener = await self._bind()
        except OSError as exc:
            problem = f"cannot create the control socket {self.path}: {exc.strerror or exc}"
            if self.explicit:
                raise ControlError(problem, "socket") from None
            log.warning("%s; running without it (set [asyncsup] control_socket to a writable path)", problem)
            return
        log.info("control socket: %s", self.path)

    async def serve(self) -> None:
        """Answer connections until cancelled."""
        if self._listener is not None:
            await self._listener.serve(self._connection)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
            self._remove()

    async def _bind(self) -> SocketListener:
        await self._refuse_live()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.parent / f".asyncsup-{os.getpid()}.sock"
        listener = await anyio.create_unix_listener(temporary, mode=0o600)
        try:
            self._inode = os.stat(temporary).st_ino
            os.replace(temporary, self.path)
        except OSError:
            await listener.aclose()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return listener

    async def _refuse_live(self) -> None:
        """Error if a live asyncsup answers on our path; a stale socket is left to be replaced."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it", "socket")
        try:
            stream = await anyio.connect_unix(self.path)
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise
            log.info("control socket %s is stale (no one listens on it): replacing it", self.path)
            return
        await stream.aclose()
        raise ControlError(f"another asyncsup is running on {self.path}", "socket_in_use")

    def _remove(self) -> None:
        """Unlink the socket, unless someone else's has replaced ours since."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._inode = None

    # -- connections -------------------------------------------------------------------------------

    async def _connection(self, stream: SocketStream) -> None:
        async with stream:
            try:
                await self._converse(stream)
            except GONE:
                pass
            except Exception:  # never let one connection take the control socket down
                log.exception("control: a connection failed")

    async def _converse(self, stream: SocketStream) -> None:
        """Answer requests, one per line, until the client closes (or follows a tail)."""
        reader = BufferedByteReceiveStream(stream)
        if not await self._allowed(stream, reader):
            return
        while True:
            try:
                line = await reader.receive_until(b"\n", MAX_REQUEST)
            except anyio.DelimiterNotFound:
                error = ControlError(f"request longer than {MAX_REQUEST} bytes", BAD_REQUEST)
                await stream.send(encode_reply(Reply.failure(error)))
                return
            result = await self._answer(line, stream)
            if isinstance(result, TailFollow):
                await _follow(result, stream, reader)
                return

    async def _allowed(self, stream: SocketStream, reader: BufferedByteReceiveStream) -> bool:
        """Our uid and root only. Others are refused in reply to their first request (read first, so
        that closing does not reset the connection before they read why), within REFUSAL_WAIT."""
        uid = _peer_uid(stream.extra(SocketAttribute.raw_socket))
        if uid in (0, os.geteuid()):
            return True
        log.warning("control socket: refused a connection from uid %s", uid)
        with anyio.move_on_after(REFUSAL_WAIT):
            await reader.receive_until(b"\n", MAX_REQUEST)
            problem = f"uid {uid} may not control this asyncsup (only uid {os.geteuid()} and root)"
            await stream.send(encode_reply(Reply.failure(ControlError(problem, NOT_ALLOWED))))
        return False

    async def _answer(self, line: bytes, stream: SocketStream) -> TailFollow | None:
        """Send the reply to one request; a TailFollow is returned to run instead."""
        try:
            result = await self.commands.call(decode_request(line))
        except ControlError as exc:
            reply = Reply.failure(exc)
        except AsyncsupError as exc:
            reply = Reply(ok=False, error=str(exc), code="failed")
        except Exception as exc:  # a bug of ours must not end the control socket
            log.exception("control: %r failed", line[:200])
            reply = Reply(ok=False, error=f"internal error: {exc!r} (see the asyncsup log)", code=INTERNAL)
        else:
            if isinstance(result, TailFollow):
                return result
            reply = Reply(ok=True, result=result)
        await stream.send(encode_reply(reply))
        return None


async def _follow(follow: TailFollow, stream: SocketStream, reader: BufferedByteReceiveStream) -> None:
    """Stream until the client closes: watched by reading, since a quiet process sends nothing."""

    async def send() -> None:
        with contextlib.suppress(*GONE):
            await follow.run(stream.send)

    async def until_closed() -> None:
        with contextlib.suppress(*GONE):
            while True:
                await reader.receive()

    await race(send, until_closed)


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)
