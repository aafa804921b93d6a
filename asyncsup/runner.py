"""`asyncsup run`: become what the process needs to be (shim child, subreaper), then serve.

The order is deliberate: the shim must fork before any thread or event loop exists, fds must be
made private before the first spawn, and logging goes through a sink thread before anything logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys

from .app import make_fds_private, serve
from .cli import run_loop
from .config import Config
from .lifecycle import Shutdown
from .logs import SinkHandler, level_from_flags, setup_logging
from .supervisor.output import LineSink, fd_writer, nowait_writer
from .supervisor.runtime import ChildTracker, NoReaper, Runtime

log = logging.getLogger("asyncsup")


def run(config: Config, args: argparse.Namespace) -> int:
    # Programs may run Python tools of asyncsup's own environment ("$ASYNCSUP_PYTHON" -m ...)
    # and find our config (`asyncsup ctl`, `asyncsup send` from inside a program need no -c).
    os.environ.setdefault("ASYNCSUP_PYTHON", sys.executable)
    os.environ["ASYNCSUP_CONFIG"] = str(config.file)
    json_lines = (args.log_format or config.settings.log_format) == "json"
    level = level_from_flags(config.settings.log_level, args.verbose, args.quiet)
    shimmed = os.getpid() == 1 and not args.no_shim
    if shimmed:
        from .shim import become_init_child

        become_init_child(log_level=level, json_logs=json_lines)  # we are pid 2 from here on
    make_fds_private()
    raise_fd_limit()
    keep_freed_memory()
    stdout = LineSink("stdout", fd_writer(1), try_write=nowait_writer(1))
    stderr = LineSink("stderr", fd_writer(2), try_write=nowait_writer(2))
    setup_logging(SinkHandler(stderr), level=level, json_lines=json_lines)
    reaper = NoReaper() if shimmed else _orphan_reaper(args)

    async def main() -> int:
        shutdown = Shutdown(config.settings.shutdown_timeout)
        runtime = Runtime(shutdown, stdout, stderr, json_lines=json_lines, reaper=reaper)
        try:
            return await serve(config, runtime)
        finally:
            runtime.close()

    try:
        return run_loop(main, args.loop)
    finally:
        logging.shutdown()
        stdout.close()
        stderr.close()


def raise_fd_limit(target: int = 65536) -> None:
    """Two pipes per child: 1,000 children need more than the usual soft limit of 1,024 fds.

    Capped at 65,536 rather than the hard limit, because children inherit it and some programs
    iterate over every possible fd.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def keep_freed_memory(mmap_threshold: int = 4 << 20, trim_threshold: int = 32 << 20) -> None:
    """Let glibc reuse the relay's freed 256 KiB chunks instead of giving them back to the kernel.

    Each chunk read from a child, and its framed copy, is freed once written; glibc then trims the
    top of the heap (brk) and the next chunk faults its pages in again: ~390 brk calls and
    thousands of minor faults per 200 MB relayed, a third of the relay's CPU. With these
    thresholds up to 32 MiB of freed heap is kept for reuse; at rest we hold little heap, so
    the idle RSS does not change. Not glibc (musl): nothing to do.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, mmap_threshold)
    mallopt(m_trim_threshold, trim_threshold)


def _orphan_reaper(args: argparse.Namespace) -> ChildTracker:
    """PID 1 without the shim, or a subreaper, reaps in-process; otherwise someone else must."""
    if os.getpid() != 1 and not args.subreaper:
        if os.getppid() != 1:  # a parent that is an init (tini, systemd) reaps them: no warning
            log.warning(
                "not PID 1 and not a child subreaper: orphans of programs are not reaped by "
                "asyncsup (run it as PID 1, or with --subreaper)"
            )
        return NoReaper()
    from .reaper import Reaper
    from .shim import set_subreaper

    if os.getpid() != 1 and not set_subreaper():
        log.warning("could not become a child subreaper; orphans will not be reaped by asyncsup")
    return Reaper()
