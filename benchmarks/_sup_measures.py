"""The measures. Each takes a driver, runs one fresh supervisor and returns plain numbers.

Nothing here asserts anything: a measure that cannot complete raises, and the caller records
the error for that supervisor and goes on with the next one.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _sup_procfs
from _sup_drivers import Driver, ProgramSpec
from _sup_procfs import wait_for
from _sup_session import Session

SLEEP = "/usr/bin/sleep" if os.path.exists("/usr/bin/sleep") else "/bin/sleep"
SETTLE = 2.0  # after the fleet is up, before idle sampling: let startup work finish
MARKER = b"BENCH-RELAY-END-7f3c\n"
Say = Callable[[str], None]


@dataclass(frozen=True)
class FleetOptions:
    children: int = 100
    kills: int = 10
    idle_seconds: float = 15.0
    measure_idle: bool = True


def fleet(driver: Driver, opts: FleetOptions, rng: random.Random, say: Say, out: dict[str, object]) -> None:
    """Cold start, idle CPU, RSS, restarts after kill -9 and SIGTERM stop, on one fleet.

    Figures land in ``out`` as they are taken, so a later failure keeps the earlier ones.
    """
    n = opts.children
    spec = ProgramSpec("sleep", (SLEEP, "3600"), numprocs=n)
    with Session(driver, [spec], "sleep") as s:
        out["cold_start_s"] = s.wait_running(n, timeout=60 + n * 0.1)
        say(f"  cold start {out['cold_start_s']:.3f} s")
        sup = s.supervisor_pid()
        time.sleep(SETTLE)
        if opts.measure_idle:
            out.update(_idle(sup, opts.idle_seconds))
            say(f"  idle CPU {out['idle_cpu_pct']:.3f} % over {opts.idle_seconds:.0f} s")
        out["rss_mb"], out["pss_mb"] = _sup_procfs.rss_mb(sup), _sup_procfs.pss_mb(sup)
        out["threads"] = _sup_procfs.threads(sup)
        shim = s.shim_pid(sup)
        if shim is not None:
            out["shim_rss_mb"], out["shim_pss_mb"] = _sup_procfs.rss_mb(shim), _sup_procfs.pss_mb(shim)
        samples = _restarts(s, driver, opts.kills, rng)
        out["restart_samples_s"] = samples
        out["restart_s"] = statistics.median(samples)
        say(f"  restart after kill -9: median {out['restart_s']:.3f} s of {len(samples)}")
        # circus drops a SIGTERM that lands while its periodic check is still respawning
        # (ConflictError, logged nowhere): stop an idle fleet, as `docker stop` usually does.
        # The random part matters too: supervisord notices a signal only at its 1 s tick, and
        # a fixed pause after a restart (done at a tick) would always land at the same phase.
        time.sleep(0.5 + rng.uniform(0, max(driver.tick, 1.0)))
        out["stop_s"], out["stop_leftovers"] = s.stop(timeout=120)
        say(f"  stop {out['stop_s']:.3f} s, {out['stop_leftovers']} children left")


def cold(driver: Driver, children: int, say: Say, out: dict[str, object]) -> None:
    """One more cold start (launch -> every child exec'd), then a stop.

    A cold start is one short figure per launch, and on two shared cores its run-to-run spread
    (+-10 %) is as wide as the distance to the goal: so it is sampled several times a run,
    interleaved between the supervisors, on top of the fleet's one.
    """
    spec = ProgramSpec("sleep", (SLEEP, "3600"), numprocs=children)
    with Session(driver, [spec], "sleep") as s:
        out["cold_start_s"] = s.wait_running(children, timeout=60 + children * 0.1)
        say(f"  cold start {out['cold_start_s']:.3f} s")
        time.sleep(SETTLE / 4)  # stop an idle fleet, as in fleet()
        s.stop(timeout=120)


def _idle(pid: int, seconds: float) -> dict[str, float]:
    exact0, ticks0, t0 = _sup_procfs.cpu_exact_seconds(pid), _sup_procfs.cpu_ticks_seconds(pid), _now()
    time.sleep(seconds)  # nothing to wait for: idling is the thing measured
    exact1, ticks1, t1 = _sup_procfs.cpu_exact_seconds(pid), _sup_procfs.cpu_ticks_seconds(pid), _now()
    wall = t1 - t0
    return {
        "idle_cpu_pct": 100 * (exact1 - exact0) / wall,
        "idle_cpu_ticks_pct": 100 * (ticks1 - ticks0) / wall,
    }


def _restarts(s: Session, driver: Driver, kills: int, rng: random.Random) -> list[float]:
    samples = []
    for _ in range(kills):
        # A random pause spreads the kills over the supervisor's periodic check, if it has one.
        time.sleep(0.1 + rng.uniform(0, driver.tick))
        victim = rng.choice(sorted(s.tree.alive()))  # type: ignore[union-attr]
        samples.append(s.kill_one_and_wait(victim, timeout=30 + 2 * driver.tick))
    return samples


def _now() -> float:
    return time.perf_counter()


# --- output relay ---------------------------------------------------------------------------

GENERATOR = """\
import os, sys
info, fifo, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(info, "w").close()
with open(fifo, "rb") as f:  # blocks until the harness says go, so the supervisor is idle
    f.read()
block = memoryview((b"x" * 99 + b"\\n") * 10000)
for _ in range(total // len(block)):
    view = block
    while view:
        view = view[os.write(1, view):]
os.write(1, MARKER)
""".replace("MARKER", repr(MARKER))


def relay(
    driver: Driver, to_file: bool, total: int, say: Say, out: dict[str, object], *, labelled: bool = True
) -> None:
    """One child writes ``total`` bytes of 100-byte lines; how fast and at what CPU cost. On stdout,
    `labelled` = False relays asyncsup's lines unprefixed (the other supervisors always do)."""
    logdir: Path | None = None
    with _relay_session(driver, to_file, total, labelled) as s:
        info, fifo = s.workdir / "gen.ready", s.workdir / "go.fifo"
        logdir = s.workdir / "logs" if to_file else None
        wait_for("the generator to start", lambda: _started(s, info), 60, 0.01)
        sup = s.supervisor_pid()  # the generator's parent, found from our side of any namespace
        # The last relay to a file left up to 1 GB of dirty pages: their writeback (kernel threads)
        # must not take the cores of this one, whoever ran before.
        os.sync()
        time.sleep(0.5)  # let the supervisor finish its own startup before the clock starts
        threads = _sup_procfs.thread_ids(sup)
        exact0, ticks0 = _sup_procfs.cpu_exact_seconds(sup), _sup_procfs.cpu_ticks_seconds(sup)
        faults0 = _sup_procfs.minor_faults(sup)
        start = _go(fifo)
        end = _wait_relayed(s, logdir, timeout=600)
        exact, ticks = (
            _sup_procfs.cpu_exact_seconds(sup) - exact0,
            _sup_procfs.cpu_ticks_seconds(sup) - ticks0,
        )
        # Per thread in ns; the 10 ms ticks (+-1 at each end) are +-10 % of a relay's CPU. A thread
        # that ended in the window takes its time with it: then only the ticks are right.
        cpu = exact if threads <= _sup_procfs.thread_ids(sup) else ticks
        out["cpu_ticks_s_per_100mb"] = ticks * 100e6 / total
        out["minor_faults_per_100mb"] = (_sup_procfs.minor_faults(sup) - faults0) * 100e6 / total
        seen = _relayed_bytes(s, logdir)
    took = end - start
    out["mb_per_s"] = total / 1e6 / took
    out["cpu_s_per_100mb"] = cpu * 100e6 / total
    out["seconds"] = took
    out["bytes_seen"] = seen
    out["complete"] = seen >= total
    where = "file" if to_file else "stdout" if labelled else "stdout, unlabelled"
    say(
        f"  relay to {where}: {out['mb_per_s']:.0f} MB/s, "
        f"{out['cpu_s_per_100mb']:.2f} CPU s/100 MB, {seen / 1e6:.0f} MB seen"
    )


def _relay_session(driver: Driver, to_file: bool, total: int, labelled: bool) -> Session:
    python = os.path.realpath("/usr/bin/python3")
    comm = os.path.basename(python)[:15]
    session = Session(driver, [], comm, drain_marker=None if to_file else MARKER)
    work = session.workdir
    (work / "gen.py").write_text(GENERATOR)
    os.mkfifo(work / "go.fifo")
    argv = (python, str(work / "gen.py"), str(work / "gen.ready"), str(work / "go.fifo"), str(total))
    log_file = None
    if to_file:
        (work / "logs").mkdir()
        log_file = work / "logs" / "gen.log"
    session.programs = [ProgramSpec("gen", argv, autorestart=False, log_file=log_file, labelled=labelled)]
    return session


def _started(s: Session, info: Path) -> bool:
    s.check_alive()
    return info.exists()


def _go(fifo: Path) -> float:
    """Open the FIFO the generator waits on; its read returns EOF when we close it."""
    fds: list[int] = []

    def opened() -> bool:
        try:  # non-blocking: fails with ENXIO until the generator has its end open
            fds.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True

    wait_for("the generator to wait for the go", opened, 30, 0.001)
    start = time.perf_counter()
    os.close(fds[0])
    return start


def _wait_relayed(s: Session, logdir: Path | None, timeout: float) -> float:
    if logdir is None:
        assert s.drain is not None
        if not s.drain.marker_seen.wait(timeout):
            raise _sup_procfs.BenchTimeout("the last line on the supervisor's stdout", timeout)
        return s.drain.marker_seen_at
    return wait_for("the last line in the log file", lambda: _marker_in(logdir), timeout, 0.005)


def _marker_in(logdir: Path) -> bool:
    """The marker is in the newest file, or split between the newest and the one before."""
    try:
        files = sorted(logdir.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)[:2]
    except FileNotFoundError:
        return False  # a rotation renamed a file under us: look again at the next poll
    tails = [_sup_procfs.tail_bytes(p, 4096) for p in reversed(files)]
    return MARKER in b"".join(tails)


def _relayed_bytes(s: Session, logdir: Path | None) -> int:
    if logdir is None:
        assert s.drain is not None
        return s.drain.nbytes
    return sum(p.stat().st_size for p in logdir.iterdir())
