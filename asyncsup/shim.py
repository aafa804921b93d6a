"""The PID 1 shim: a tiny init that stays PID 1 while the supervisor runs as its child, pid 2.

Why a shim (PID1.md §0, design 1): any ``waitpid(-1)`` reaper inside the asyncio process steals
exit statuses from asyncio's child watcher, from libuv and from user ``subprocess`` calls
(``Process.wait()`` returns 255 or hangs; ``Popen.wait()`` reports 0). With a shim, orphans are
re-parented to PID 1, which is *another* process, so every waiter in the supervisor owns its
children exclusively and the shim may reap with ``waitpid(-1)`` freely.

What the shim (the parent, PID 1) does, and nothing else:

* receives every signal synchronously (all are blocked; ``sigtimedwait``), so no handler runs
  and nothing can be lost between a check and a wait;
* forwards the signals in ``FORWARDED_SIGNALS`` to the supervisor. It drops SIGCHLD (its own
  business), SIGTSTP/SIGTTIN/SIGTTOU (job control: PID 1 must not stop, and stopping the
  supervisor would stall every child; they are ignored), the synchronous fault signals (a
  ``kill -SEGV`` from outside means nothing to us) and signals it raised itself (e.g. SIGPIPE
  from a log write to a closed stderr);
* reaps every child with ``waitpid(-1, WNOHANG)`` and logs each orphan at INFO as
  ``reaped orphan pid 123 (exit 7)`` on the ``asyncsup.reaper`` logger: the same line the
  in-process reaper writes, so both modes read alike; level and format are passed in, since
  the supervisor sets its logging up only after the fork;
* exits with the supervisor's status (its exit code, or 128+N for signal N). Exiting makes the
  kernel SIGKILL whatever is left in the PID namespace, setsid'ed daemons included.

The child (the supervisor) gets its own process group, takes the terminal's foreground if it
had it (so one ^C reaches it once, not also through the shim), installs a no-op handler for
every forwarded signal it has no handler for (pid 2 has no PID-1 protection: an unhandled
SIGUSR1 would kill it; the supervisor's own handlers replace these) except SIGTERM and SIGQUIT,
which should stop it even before its handlers exist, and unblocks all signals.
No handler survives ``exec``, so programs start with nothing blocked or ignored (PID1 case 28).
No environment marker is set: the child is pid 2, so it cannot take this path again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import NoReturn

log = logging.getLogger("asyncsup.reaper")

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_WAKE_EVERY = 1.0  # seconds; sigtimedwait's timeout, a safety net should a SIGCHLD be merged

_JOB_CONTROL = {signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
_FAULTS = {
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGABRT,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGSEGV,
    signal.SIGSYS,
}
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
# Left at their default in the supervisor until it installs its own handlers: a `docker stop`
# that comes before the event loop is up then ends it (143) instead of being lost.
_STOPPING = {signal.SIGTERM, signal.SIGQUIT}

FORWARDED_SIGNALS: frozenset[signal.Signals] = frozenset(
    s for s in signal.Signals if s < 32 and s not in _JOB_CONTROL | _FAULTS | _UNCATCHABLE | {signal.SIGCHLD}
)
"""What the shim passes on to the supervisor, which must handle (or mean to die of) each."""


def become_init_child(*, log_level: int = logging.INFO, json_logs: bool = False) -> None:
    """Fork: the parent stays PID 1 as the shim and never returns; the child returns as pid 2.

    Call it before any thread, event loop or subprocess exists: a thread would not survive the
    fork, and a child spawned before it would be reaped by the shim behind its owner's back.
    ``log_level`` and ``json_logs`` make the shim's lines match the supervisor's logging, which
    is set up only after the fork (its sink is a thread).
    """
    everything = signal.valid_signals()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, everything)
    try:
        supervisor = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        raise
    if supervisor == 0:
        _become_supervisor()
        return
    _setup_logging(log_level, json_logs)
    _run_init(supervisor, everything)


def _become_supervisor() -> None:
    """In the child: own group, the terminal's foreground, harmless handlers, nothing blocked."""
    shim_group = os.getpgrp()
    os.setpgid(0, 0)
    _take_terminal(shim_group)  # SIGTTOU is still blocked, so a background tcsetpgrp works
    # Whatever started us may have ignored some (a shell's background job ignores INT and QUIT,
    # nohup HUP): an ignored disposition would pass to every program, so none is kept.
    for signum in FORWARDED_SIGNALS:
        if signum in _STOPPING:
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
        elif signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(signum, _ignore)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _take_terminal(shim_group: int) -> None:
    """Become the foreground group of stdin's terminal, if the shim's group had it."""
    with contextlib.suppress(OSError):  # no tty, or not our controlling tty: nothing to take
        if os.isatty(0) and os.tcgetpgrp(0) == shim_group:
            os.tcsetpgrp(0, os.getpgrp())


def _ignore(signum: int, frame: object) -> None:
    """Stands in for SIG_DFL on pid 2 (whose default would kill it) without being inherited."""


def _run_init(supervisor: int, waited: set[signal.Signals]) -> NoReturn:
    """The shim's whole life: forward, reap, and exit with the supervisor's status."""
    me = os.getpid()
    while True:
        info = signal.sigtimedwait(waited, _WAKE_EVERY)
        if info is not None and info.si_signo in FORWARDED_SIGNALS and info.si_pid != me:
            with contextlib.suppress(ProcessLookupError):  # exiting already; the reap follows
                os.kill(supervisor, info.si_signo)
        status = _reap_all(supervisor)
        if status is not None:
            logging.shutdown()
            os._exit(exit_code(status))


def _reap_all(supervisor: int) -> int | None:
    """Reap every waitable child; return the supervisor's wait status if it was among them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == supervisor:
            found = status
        else:
            log.info("reaped orphan pid %d (%s)", pid, describe_status(status))


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def describe_status(status: int) -> str:
    """A wait status in words, as the supervisor logs exits: ``exit 7``, ``killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    return f"exit {os.WEXITSTATUS(status)}"


def _setup_logging(level: int, json_logs: bool) -> None:
    """The shim's own handler: plain blocking writes to stderr (no sink thread in PID 1)."""
    from .logs import JsonFormatter, TextFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # whatever the root logger has was set up for the supervisor


def set_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux >= 3.4); True on success."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0


def is_subreaper() -> bool:
    """Whether orphaned descendants of this process are re-parented to it."""
    flag = ctypes.c_int(0)
    if _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag)) != 0:
        return False
    return flag.value != 0


def _prctl(option: int, arg: int) -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result: int = libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux, or no libc prctl
        return -1
    return result
