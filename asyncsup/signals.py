"""Signals become intents. Handlers only record (request a shutdown, forward, log); the loop acts.

TERM, INT and QUIT drain; a second one forces. HUP reloads the config (`ctl update`), USR1 reopens
log files (logrotate), USR2 restarts workers with fresh code (`ctl stop-workers`); each is also relayed
to the programs that list it in forward_signals. Their handlers only record the request: the
Reloader (control/reload.py) does the work, one change at a time.
Every other catchable asynchronous signal gets a logging handler, because in shim mode we are pid 2
and no longer protected like PID 1: an unhandled SIGUSR1 or SIGALRM would kill us. We install
handlers rather than SIG_IGN on purpose: an ignored disposition is inherited by every child we spawn,
a handler is reset at exec.

SIGCHLD is not ours to handle: our children are watched through pidfds. On uvloop it belongs to
libuv, and user code that replaces it hangs asyncio subprocesses; SigchldWatch says so.
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


class SigchldWatch:
    """On uvloop, reports user code that installs a SIGCHLD handler, instead of a silent hang.

    libuv learns that a child of ``asyncio.create_subprocess_exec`` exited from its own SIGCHLD
    handler. ``signal.signal(SIGCHLD, h)`` in an inline handler (or a library it uses) while such
    a child lives replaces it, and from then on ``await proc.wait()`` never returns (PID1.md §0).
    Nothing can refuse the call (``signal.signal`` has no hook, not even an audit event) and
    libuv's handler cannot be put back from Python, so we look at every beat of the lag watchdog
    and log the culprit once. asyncsup's own programs are watched through pidfds: not affected.
    Make it before any user code runs: what it sees then is what it expects.
    """

    def __init__(self) -> None:
        self._expected = self._seen = signal.getsignal(signal.SIGCHLD)

    def __repr__(self) -> str:
        return f"<SigchldWatch expecting {_handler_name(self._expected)}, seen {_handler_name(self._seen)}>"

    def check(self) -> None:
        current = signal.getsignal(signal.SIGCHLD)
        if current == self._seen:
            return
        self._seen = current
        if current != self._expected:
            log.error(
                "a SIGCHLD handler %s was installed in asyncsup's process: on uvloop it replaces the "
                "loop's own, and asyncio subprocesses of inline handlers never report their exit "
                "(await proc.wait() hangs); asyncsup's programs are not affected. Remove it, or run "
                "with --loop asyncio",
                _handler_name(current),
            )


def on_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def _handler_name(handler: object) -> str:
    """`module.qualname` of a Python handler; SIG_DFL, SIG_IGN or None as they are."""
    if isinstance(handler, signal.Handlers) or handler is None:
        return str(getattr(handler, "name", handler))
    module, name = getattr(handler, "__module__", None), getattr(handler, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(handler)
