"""A small HTTP/1.1 server for probes and scrapes: GET or HEAD of a few fixed paths, then close.

No framework for three routes whose bodies we build ourselves. Each connection answers one request
and closes (`Connection: close`), which kubelet probes and Prometheus handle fine. The request head
must arrive within REQUEST_TIMEOUT and fit in MAX_HEAD, so an idle or hostile client cannot hold a
task for long; request bodies are never read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from ..errors import ControlError

log = logging.getLogger("asyncsup.control")

REQUEST_TIMEOUT = 10.0
MAX_HEAD = 16 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# What a client that went away looks like; its connection just ends.
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"

    def encode(self, head_only: bool = False) -> bytes:
        body = self.body.encode()
        head = (
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        return head.encode("latin-1") + (b"" if head_only else body)


Route = Callable[[], Awaitable[Response]]


class HttpServer:
    def __init__(self, listen: tuple[str, int], routes: Mapping[str, Route]) -> None:
        self.listen = listen
        self.routes = routes
        self.addresses: list[str] = []
        self._listener: Listener[SocketStream] | None = None

    def __repr__(self) -> str:
        where = ", ".join(self.addresses) or "not listening"
        return f"<HttpServer {where}: {', '.join(self.routes)}>"

    async def open(self) -> None:
        host, port = self.listen
        try:
            self._listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            problem = f"[http] cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise ControlError(problem, "http") from None
        self.addresses = _addresses(self._listener)
        urls = ", ".join(f"http://{address}" for address in self.addresses)
        log.info("http: serving %s on %s", " ".join(self.routes), urls)

    async def serve(self) -> None:
        """Answer requests until cancelled."""
        if self._listener is not None:
            await self._listener.serve(self._connection)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None

    async def _connection(self, stream: ByteStream) -> None:
        async with stream:
            try:
                line = await _request_line(stream)
                if line is not None:
                    response, head_only = await self._answer(line)
                    await stream.send(response.encode(head_only))
            except GONE:
                pass
            except Exception:  # never let one connection take the server down
                log.exception("http: a connection failed")

    async def _answer(self, line: str) -> tuple[Response, bool]:
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response(400, "bad request line\n"), False
        method, path = parts[0], parts[1].split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            return Response(404, f"not found; try {', '.join(self.routes)}\n"), method == "HEAD"
        if method not in ("GET", "HEAD"):
            return Response(405, "only GET and HEAD\n"), False
        try:
            return await route(), method == "HEAD"
        except Exception:  # a bug must not take the probe endpoint down with it
            log.exception("http: %s failed", path)
            return Response(500, "internal error; see the asyncsup log\n"), method == "HEAD"


async def _request_line(stream: ByteStream) -> str | None:
    """The request line once the whole head arrived; None on a timeout, an early close or a huge head."""
    with anyio.move_on_after(REQUEST_TIMEOUT):
        try:
            head = await BufferedByteReceiveStream(stream).receive_until(b"\r\n\r\n", MAX_HEAD)
        except (anyio.IncompleteRead, anyio.DelimiterNotFound):
            return None
        return head.split(b"\r\n", 1)[0].decode("latin-1")
    return None


def _addresses(listener: Listener[object]) -> list[str]:
    """host:port of each bound socket ("localhost" may bind both 127.0.0.1 and ::1)."""
    result = []
    for one in getattr(listener, "listeners", [listener]):
        host, port = one.extra(SocketAttribute.local_address)[:2]
        result.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return result
