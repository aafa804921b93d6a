"""Consumers as part of `asyncsup run`: inline ones in this process (consumer/inline.py), the others
as programs (here).

``processes = 0`` runs a consumer inline, in the supervisor's event loop: cheapest, and enough
when handlers are I/O-bound. When a limit stops it, it is restarted in-process (a memory limit
cannot be cured that way: the log says so and suggests ``processes = N``). ``processes = N`` turns
it into a supervised program of N ``asyncsup consume --consumer NAME`` children, which the
supervisor restarts whenever they exit (limits included), each with a fresh heap.
"""

from __future__ import annotations

import sys

from asyncsup.config import Config, Program
from asyncsup.consumer.reports import REPORT_TO
from asyncsup.control.address import server_socket


def consumer_programs(config: Config) -> dict[str, Program]:
    """One supervised program per consumer with ``processes = N``: N `asyncsup consume` children."""
    programs = {}
    for consumer in config.consumers.values():
        if consumer.processes > 0:
            name = f"consumer-{consumer.name}"
            command = (sys.executable, "-m", "asyncsup", "consume", "--consumer", consumer.name,
                       "-c", str(config.file))  # fmt: skip
            programs[name] = Program(
                name=name,
                command=command,
                numprocs=consumer.processes,
                autorestart="always",  # a limit exits 0 on purpose: it wants a fresh process
                restart_on_deploy=True,  # stop-workers: SIGTERM one copy at a time, it drains
                startretries=None,
                stop_timeout=config.settings.shutdown_timeout,
                environment={REPORT_TO: str(server_socket(config)[0])},  # counters for ctl status
            )
    return programs
