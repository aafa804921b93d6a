"""serve(): build the parts from a config, run them in one root task group, return the exit code."""

from __future__ import annotations

import contextlib
import logging
import os

import anyio

from . import signals
from ._version import __version__
from .config import Config, Program
from .consumer.depths import QueueDepths
from .consumer.inline import InlineConsumers
from .control.plane import ControlPlane
from .control.reload import Reloader
from .supervisor.runtime import Runtime
from .supervisor.service import Supervisor

log = logging.getLogger("asyncsup")


async def serve(config: Config, runtime: Runtime) -> int:
    """Run programs (and inline consumers) until shutdown; the order of the stop is in lifecycle.py."""
    shutdown = runtime.shutdown
    supervisor = Supervisor(all_programs(config), runtime)
    consumers = InlineConsumers(config, shutdown)  # cheap: handler code is imported by run()
    reloader = Reloader(config, supervisor, consumers, runtime)
    control = ControlPlane(config, supervisor, shutdown, reloader=reloader)
    control.add_statistics("consumer", consumers.statistics, export=False)
    control.add_metrics(consumers.write_metrics)
    control.add_command("report", consumers.reports.record)
    depths = QueueDepths(lambda: reloader.config, consumers.transports_in_use)
    control.add_statistics("queue", depths.counts)
    if signals.on_uvloop():  # made now, before the consumers import any handler code
        control.lag.on_beat(signals.SigchldWatch().check)
    # Bound before anything starts (a second asyncsup on the socket stops here), closed last.
    async with control.listening(), anyio.create_task_group() as root:
        root.start_soon(shutdown.enforce_deadline, name="shutdown deadline")
        root.start_soon(control.serve, name="control plane")
        root.start_soon(reloader.run, name="reload, deploy and log reopening")
        run_reaper = getattr(runtime.reaper, "run", None)
        if run_reaper is not None:
            root.start_soon(run_reaper, name="orphan reaper")
        with signals.installed(shutdown, supervisor.forward_signal, reloader):
            log.info(
                "asyncsup %s (pid %d): %d program(s), %d inline consumer(s)",
                __version__, os.getpid(), len(supervisor.programs), len(_inline_consumers(config)),
            )
            async with anyio.create_task_group() as work:
                work.start_soon(supervisor.run, name="supervisor")
                work.start_soon(consumers.run, name="consumers")
        root.cancel_scope.cancel()
    await depths.close()
    log.info("asyncsup stopped (%s), exit code %d", shutdown.reason or "no reason", shutdown.exit_code)
    return shutdown.exit_code


def all_programs(config: Config) -> dict[str, Program]:
    """The programs of a config, consumers with processes = N included."""
    from .consumer.service import consumer_programs

    return {**config.programs, **consumer_programs(config)}


def _inline_consumers(config: Config) -> list[str]:
    return [name for name, c in config.consumers.items() if not c.processes]


def make_fds_private() -> None:
    """Mark every inherited fd above 2 close-on-exec, so no child sees them.

    Our own spawn (supervisor/spawn.py) closes them anyway; this covers the other spawns in our
    process, such as an inline handler's subprocess on uvloop, which ignores close_fds
    (reference/PID1.md). Fds we open ourselves are already non-inheritable (PEP 446).
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)

