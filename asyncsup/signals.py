"""Signals become intents. Handlers only record (request a shutdown, forward, log); the loop acts.

TERM, INT and QUIT drain; a second one forces. HUP reloads the config (`ctl update`), USR1 reopens
log files (logrotate), USR2 restarts workers with fresh code (`ctl stop-workers`); each is also relayed
to the programs that list it in forward_signals. Their handlers only record the request: the
Reloader (control/reload.py) does the work, one change at a time.
Every other catchable asynchronous signal gets a logging handler, because in shim mode we are pid 2
and no longer protected like PID 1: an unhandled SIGUSR1 or SIGALRM would kill us. We install
handlers rather than SIG_IGN on purpose: an ignored disposition is inherited by every child we spawn,
a handler is reset at exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Protocol

from .lifecycle import Shutdown

log = logging.getLogger("asyncsup")

GRACEFUL = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
RESERVED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# Asynchronous signals whose default action would stop or kill us. Synchronous ones (SEGV, BUS,
# FPE, ILL, ABRT, TRAP, SYS) keep their default: a Python-level handler would turn a real fault
# into an endless loop. SIGPIPE and SIGXFSZ stay as Python set them (ignored; restored in children).
HARMLESS = tuple(
    getattr(signal, name)
    for name in (
        "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGWINCH", "SIGURG", "SIGCONT",
        "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGIO", "SIGPWR", "SIGSTKFLT",
    )
    if hasattr(signal, name)
)


class Intents(Protocol):
    """Where HUP, USR1 and USR2 are recorded (control/reload.py's Reloader)."""

    @property
    def update_requested(self) -> Request: ...
    @property
    def reopen_requested(self) -> Request: ...
    @property
    def deploy_requested(self) -> Request: ...


class Request(Protocol):
    def request(self) -> None: ...


WORDS = {
    signal.SIGHUP: "reloading the config",
    signal.SIGUSR1: "reopening log files",
    signal.SIGUSR2: "restarting workers (stop-workers)",
}


@contextlib.contextmanager
def installed(shutdown: Shutdown, forward: Callable[[int], int], intents: Intents) -> Iterator[None]:
    """Install our handlers on the running loop for the duration of the block."""
    loop = asyncio.get_running_loop()
    for sig in GRACEFUL:
        loop.add_signal_handler(sig, _on_stop, shutdown, sig)
    requests = {
        signal.SIGHUP: intents.update_requested,
        signal.SIGUSR1: intents.reopen_requested,
        signal.SIGUSR2: intents.deploy_requested,
    }
    for sig in RESERVED:
        loop.add_signal_handler(sig, _on_reserved, sig, forward, requests[sig])
    for sig in HARMLESS:
        loop.add_signal_handler(sig, _on_harmless, sig)
    try:
        yield
    finally:
        for sig in (*GRACEFUL, *RESERVED, *HARMLESS):
            loop.remove_signal_handler(sig)
            # Not SIG_DFL, which remove_signal_handler leaves: we are finishing anyway, and as pid 2
            # under the shim a late USR1 or TERM with its default would kill us mid-cleanup.
            signal.signal(sig, _too_late)


def _too_late(signum: int, frame: object) -> None:
    """Signals that arrive while asyncsup finishes its cleanup: nothing left to do."""


def _on_stop(shutdown: Shutdown, sig: signal.Signals) -> None:
    if shutdown.requested:
        log.warning("%s received again: stopping now", sig.name)
        shutdown.exit_code = 128 + sig
        shutdown.force(f"{sig.name} received again")
    else:
        deadline = shutdown.timeout
        log.info("%s received: draining (deadline %gs; send it again to stop now)", sig.name, deadline)
        shutdown.request(f"{sig.name} received")


def _on_reserved(sig: signal.Signals, forward: Callable[[int], int], intent: Request) -> None:
    relayed = forward(sig)
    log.info("%s received: relayed to %d program(s); %s", sig.name, relayed, WORDS[sig])
    intent.request()


def _on_harmless(sig: signal.Signals) -> None:
    log.info("%s received: ignored", sig.name)
