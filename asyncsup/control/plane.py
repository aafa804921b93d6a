"""The control plane: the control socket, the HTTP endpoints and the loop-lag watchdog, as one part.

app.serve() starts it in the root task group before the programs, so a second asyncsup on the same
socket is refused before it starts anything; it stops last (lifecycle.py, step 4), so `ctl status`
and /readyz keep answering while the rest drains.

Statistics hook: a part with numbers to show (a consumer) registers a provider with
`add_statistics(kind, provider)`; `provider()` returns {name: statistics dataclass} (or an awaitable
of it, when the numbers need I/O, like queue counts). `ctl status` shows them and /metrics exports
each numeric field as a gauge `asyncsup_<kind>_<field>{<kind>="<name>"}`, unless `export=False`:
a part whose numbers are counters writes its own families with `add_metrics(writer)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ..config import Config
from ..lifecycle import Shutdown
from ..supervisor.service import Supervisor
from ..supervisor.states import State
from .address import server_socket
from .commands import Commands, Handler
from .http import HttpServer, Response, Route
from .lag import LoopLag
from .metrics import CONTENT_TYPE, Exposition, Snapshot, render
from .server import ControlServer
from .status import process_status

if TYPE_CHECKING:
    from .reload import Reloader

log = logging.getLogger("asyncsup.control")

StatisticsProvider = Callable[[], Mapping[str, object] | Awaitable[Mapping[str, object]]]
MetricsWriter = Callable[[Exposition], None]


class ControlPlane:
    def __init__(
        self, config: Config, supervisor: Supervisor, shutdown: Shutdown, *, reloader: Reloader | None = None
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.shutdown = shutdown
        self.reloader = reloader  # reread, update and stop-workers; None: those commands are refused
        self.lag = LoopLag()
        self.socket_path, explicit = server_socket(config)
        self.server = ControlServer(self.socket_path, Commands(self), explicit=explicit)
        listen = config.http.listen
        self.http = HttpServer(listen, self._routes()) if listen is not None else None
        self._providers: list[tuple[str, StatisticsProvider, bool]] = []
        self._writers: list[MetricsWriter] = []

    def __repr__(self) -> str:
        listen = self.config.http.listen
        http = f"http on {listen[0]}:{listen[1]}" if listen else "no http"
        return f"<ControlPlane socket {self.socket_path}, {http}, {self.lag}>"

    def add_statistics(self, kind: str, provider: StatisticsProvider, *, export: bool = True) -> None:
        """Show `provider()` ({name: statistics dataclass}) in `ctl status`, and in /metrics as `kind`
        gauges unless `export` is False."""
        self._providers.append((kind, provider, export))

    def add_command(self, name: str, handler: Handler) -> None:
        """A command of the control socket that another part answers (consumer children's `report`)."""
        self.server.commands.table[name] = handler

    def add_metrics(self, writer: MetricsWriter) -> None:
        """`writer(exposition)` adds its own metric families to /metrics (counters, labels of its own)."""
        self._writers.append(writer)

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Bind the socket and the HTTP port for the block; errors (socket in use) are raised plainly."""
        await self.server.open()
        try:
            if self.http is not None:
                await self.http.open()
            yield
        finally:
            with anyio.CancelScope(shield=True):  # the socket file must go even when cancelled
                if self.http is not None:
                    await self.http.close()
                await self.server.close()

    async def serve(self) -> None:
        """Answer the socket and HTTP, and watch the loop's lag, until cancelled (inside listening())."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.server.serve, name="control socket")
            if self.http is not None:
                tg.start_soon(self.http.serve, name="http")
            tg.start_soon(self.lag.run, name="loop lag watchdog")

    def readiness(self) -> tuple[bool, str]:
        """Ready while not shutting down and every critical program's processes are RUNNING."""
        if self.shutdown.requested:
            return False, f"shutting down ({self.shutdown.reason})"
        for runner in self.supervisor.programs.values():
            if runner.program.critical:
                for child in runner.children:
                    if child.state is not State.RUNNING:
                        return False, f"critical process {child.name} is {child.state}"
        return True, "ready"

    async def statistics(self) -> dict[str, dict[str, Any]]:
        """{kind: {name: {field: value}}} from every registered provider, as JSON-able values."""
        gathered = await self._gather(exported_only=False)
        return {kind: {n: _plain(s) for n, s in by_name.items()} for kind, by_name in gathered.items()}

    async def _gather(self, *, exported_only: bool) -> dict[str, dict[str, object]]:
        result: dict[str, dict[str, object]] = {}
        for kind, provider, export in self._providers:
            if export or not exported_only:
                found = provider()
                if inspect.isawaitable(found):
                    found = await found
                result.setdefault(kind, {}).update(found)
        return result

    # -- HTTP ----------------------------------------------------------------------------------------

    def _routes(self) -> dict[str, Route]:
        return {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}

    async def _healthz(self) -> Response:
        return Response(200, "ok\n")  # answering at all is the proof: the loop is not stuck

    async def _readyz(self) -> Response:
        ready, why = self.readiness()
        return Response(200 if ready else 503, why + "\n")

    async def _metrics(self) -> Response:
        ready, _ = self.readiness()
        processes = await process_status(
            child for runner in self.supervisor.programs.values() for child in runner.children
        )
        statistics = await self._gather(exported_only=True)
        snapshot = Snapshot(processes, self.lag.statistics(), ready, self.shutdown.requested, statistics)
        extra = Exposition()
        for writer in self._writers:
            writer(extra)
        more = extra.text()
        text = render(snapshot) + (more if more.strip() else "")
        return Response(200, text, CONTENT_TYPE)


def _plain(stats: object) -> Any:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return dict(stats) if isinstance(stats, Mapping) else repr(stats)
