"""PID-1 conformance, the P2 cases of reference PID1.md §8: 15, 19, 21, 29, 32, 33 and 34.

Same harness as test_pid1.py: asyncsup is the init of a fresh PID namespace (or pid 2 under
dumb-init or tini), watched from the host; waits are for log lines or kernel state, bounded.
Every case runs on asyncio and uvloop; the signal case also in both PID-1 designs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pid1 import (
    HEADER,
    LOOPS,
    MODES,
    PYTHON,
    ROOT,
    Namespace,
    alive,
    asyncsup_argv,
    asyncsup_env,
    child,
    children_of,
    cmdline,
    proc_state,
    proc_status,
    program,
    require_pid1_support,
    start,
    stop,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.pid1


@pytest.fixture(autouse=True)
def _needs_root_and_unshare() -> None:
    require_pid1_support()


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def transitions(ns: Namespace, name: str) -> list[str]:
    """`name`'s state changes as logged: "STARTING -> BACKOFF (exit 2; retry in 0.10s)"."""
    found = [re.search(rf" {name}: (\w+ -> \w+.*)$", line) for line in ns.lines()]
    return [re.sub(r"\(pid \d+\)", "(pid N)", match[1]) for match in found if match]


def where(ns: Namespace, pattern: str) -> list[int]:
    """Indexes of the log lines matching `pattern`, to compare their order."""
    return [i for i, line in enumerate(ns.lines()) if re.search(pattern, line)]


def printed_signals(ns: Namespace) -> list[str]:
    """`name | got SIGX` lines of print_signals.py workers, in the order asyncsup relayed them."""
    return [line for line in ns.lines("stdout") if re.match(r"^[\w:]+ \| got ", line)]


# -- 15: job control ----------------------------------------------------------------------------------

JOB_CONTROL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def test_case15_job_control_signals_stop_nothing(tmp_path: Path, loop: str, mode: str) -> None:
    """15. A terminal attached; TSTP, TTIN and TTOU sent to PID 1, then ^Z typed. Policy: ignored.
    A stopped init would stall every program and the drain, and nobody resumes it in a container
    (dumb-init instead suspends its child and itself). The shim drops them, the supervisor logs
    those it gets (all of them without the shim; the ^Z, sent to the terminal's foreground group,
    in both designs). Nothing is stopped, the workers (own sessions) get nothing, and SIGTERM
    still drains: one SIGTERM each, exit 0."""
    workers = program("sig", child("print_signals.py"), numprocs=2)
    with start(tmp_path, loop, mode, workers, tty=True) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        supervisor = ns.supervisor()
        for sig in JOB_CONTROL:
            ns.kill(sig)
        if mode == "in-process":
            for sig in JOB_CONTROL:
                ns.wait_line(rf"{sig.name} received: ignored", stream="stdout")
        else:  # taken by the shim: none left pending, none forwarded
            wait_until(lambda: int(proc_status(ns.init)["ShdPnd"], 16) == 0, 10, "the shim took them")
        typed = ns.mark("stdout")  # only now: a ^Z while the first TSTP is pending would merge with it
        ns.write_tty(b"\x1a")
        ns.wait_line(r"SIGTSTP received: ignored", stream="stdout", start=typed)
        everyone = [ns.init, supervisor, *ns.find("print_signals")]
        assert {pid: proc_state(pid) for pid in everyone if proc_state(pid) not in ("S", "R")} == {}
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0, "\n".join(ns.lines("stdout"))
    assert sorted(printed_signals(ns)) == ["sig:0 | got SIGTERM", "sig:1 | got SIGTERM"]


# -- 19: crashes after a successful start -------------------------------------------------------------

# Odd runs fail at once (a failed start), even runs crash after 0.7 s, well past startsecs.
ALTERNATING = """
read n < runs; n=$((n + 1)); echo $n > runs
[ $((n % 2)) -eq 1 ] && exit 2
sleep 0.7; exit 1
"""


def test_case19_a_crash_after_startsecs_is_a_successful_start(tmp_path: Path, loop: str) -> None:
    """19. Runs alternate between failing at once and crashing after startsecs. startretries = 1,
    so without a reset the second failed start would be FATAL; backoff x400, so without a reset the
    second delay would be 40s. Each crash after startsecs counts as a successful start: retries
    and backoff start over (every failed start waits 0.10s), a crash is restarted at once, and
    past flap_limit starts the crash backs off (RUNNING -> BACKOFF), longer as starts pile up: the
    last wait is the 60 s cap, so the stop surely lands in it however slow the machine."""
    (tmp_path / "runs").write_text("0\n")
    worker = program(
        "w",
        ALTERNATING,
        directory=str(tmp_path),
        autorestart="always",
        startsecs="0.2s",
        startretries=1,
        backoff={"initial": "0.1s", "multiplier": 400, "max": "60s", "jitter": 0},
        flap_limit=4,
    )
    with start(tmp_path, loop, "shim", worker) as ns:
        ns.wait_line(r"w: RUNNING -> BACKOFF \(exit 1, flapping; retry in 60.00s\)")
        stop(ns)
    failed, crashed = "STARTING -> BACKOFF (exit 2; retry in 0.10s)", "STARTING -> RUNNING (pid N)"
    again = "BACKOFF -> STARTING"
    assert transitions(ns, "w") == [
        "STOPPED -> STARTING",
        *(failed, again, crashed, "RUNNING -> EXITED (exit 1; restarting)", "EXITED -> STARTING"),
        *(failed, again, crashed, "RUNNING -> BACKOFF (exit 1, flapping; retry in 0.10s)", again),
        *(failed, again, crashed, "RUNNING -> BACKOFF (exit 1, flapping; retry in 60.00s)"),
        "BACKOFF -> STOPPED (stopped while backing off)",
    ]


# -- 21: what an exited copy left in its group --------------------------------------------------------

# The first run leaves `sleep 611` in its process group and exits; the second stays up.
LEAKY = """
read n < runs; n=$((n + 1)); echo $n > runs
sleep 61$n &
[ $n -eq 1 ] && exit 1
exec sleep 600
"""


def test_case21_leftovers_are_killed_before_the_restart(tmp_path: Path, loop: str) -> None:
    """21. A copy exits and leaves a process in its group: before the next copy starts, that
    group is SIGKILLed, so the two never run side by side (no duplicate consumer)."""
    (tmp_path / "runs").write_text("0\n")
    worker = program("w", LEAKY, directory=str(tmp_path), autorestart="always")
    with start(tmp_path, loop, "shim", worker) as ns:
        ns.wait_line(r"w: STARTING -> RUNNING", count=2)
        wait_until(lambda: not _sleeping("611", ns), 10, "the first copy's leftover gone")
        wait_until(lambda: _sleeping("612", ns), 10, "the second copy's")
        stop(ns)
    killed = where(ns, r"w: killed what the previous copy left in process group")
    starts = where(ns, r"w: \w+ -> STARTING")
    assert len(killed) == 1 and starts[0] < killed[0] < starts[1], "\n".join(ns.lines())


@pytest.mark.parametrize("when", ["ctl stop while backing off", "shutdown after it exited"])
def test_case21_leftovers_are_killed_when_the_program_is_stopped(
    tmp_path: Path, loop: str, when: str
) -> None:
    """21. A copy exits leaving a process in its group, and then the program is stopped: either
    `ctl stop` while it backs off from that failed start, or a shutdown while it is EXITED
    (autorestart = "never"). There is no copy left to stop, but what it left dies at the stop,
    not only when PID 1 exits (which it never does when asyncsup is not PID 1)."""
    leaky = "sleep 613 & exit 3"
    by_ctl = when.startswith("ctl")
    if by_ctl:
        worker = program("w", leaky, startsecs="5s", autorestart="always", backoff={"initial": "60s"})
        settled = r"w: STARTING -> BACKOFF"
    else:
        worker = program("w", leaky)
        settled = r"w: RUNNING -> EXITED \(exit 3\)"
    # Ignores SIGTERM and ends when the test opens its FIFO: asyncsup drains until we have looked.
    os.mkfifo(tmp_path / "release")
    holder = program("holder", "trap '' TERM; read x < release", directory=str(tmp_path), stop_timeout="20s")
    with start(tmp_path, loop, "shim", worker, holder) as ns:
        ns.wait_line(settled)
        leftover = wait_until(lambda: _sleeping("613", ns), 10, "the leftover")[0]
        if by_ctl:
            ctl = _ctl(tmp_path, loop, "stop", "w")
            assert ctl.returncode == 0, ctl.stdout + ctl.stderr
        else:
            ns.kill(signal.SIGTERM)
        ns.wait_line(r"w: killed what the previous copy left in process group \d+")
        wait_until(lambda: not alive(leftover), 10, "the leftover killed")
        assert alive(ns.init)
        if by_ctl:
            ns.kill(signal.SIGTERM)
        with open(tmp_path / "release", "w"):
            pass
        assert ns.wait() == 0


def _sleeping(seconds: str, ns: Namespace) -> list[int]:
    return [pid for pid in ns.find(f"sleep {seconds}") if cmdline(pid) == ["sleep", seconds]]


def _ctl(tmp_path: Path, loop: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [PYTHON, "-m", "asyncsup", "ctl", "-c", str(tmp_path / "asyncsup.toml"), *args]
    return subprocess.run(argv, env=asyncsup_env(loop), capture_output=True, text=True, timeout=30)


# -- 29: working directories --------------------------------------------------------------------------


def test_case29_directory_sets_the_workers_cwd_and_asyncsup_keeps_its_own(tmp_path: Path, loop: str) -> None:
    """29. directory = "/tmp": the worker runs in /tmp. Without it, a worker runs where asyncsup
    was started (the container's WORKDIR). asyncsup itself does not chdir: relative commands,
    handler imports and programs without `directory` rely on that folder; in a container it is
    on the image's root file system, which is mounted as long as the container runs anyway."""
    probe = 'echo "cwd $(readlink /proc/self/cwd)"; exec sleep 600'
    in_tmp, here = program("in_tmp", probe, directory="/tmp"), program("here", probe)
    with start(tmp_path, loop, "shim", in_tmp, here) as ns:
        assert ns.wait_line(r"^in_tmp \| cwd ", stream="stdout")[0] == "in_tmp | cwd /tmp"
        assert ns.wait_line(r"^here \| cwd ", stream="stdout")[0] == f"here | cwd {tmp_path}"
        for pid in (ns.init, ns.supervisor()):
            assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
        stop(ns)


# -- 32: resources stay bounded -----------------------------------------------------------------------

# Counts its runs in a file (builtins only: one fork per run). Run 200 waits on a FIFO so the test
# samples asyncsup in a quiet moment; run 2,000 stays up, the same moment again.
SEQUENTIAL = """
read n < runs; n=$((n + 1)); echo $n > runs
if [ $n -eq 200 ]; then echo paused; read x < go; fi
if [ $n -ge 2000 ]; then echo done; exec sleep 600; fi
"""


def _usage(pid: int) -> tuple[int, int, int]:
    """(open fds, threads, RSS in KiB) of a process."""
    status = proc_status(pid)
    return len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"]), int(status["VmRSS"].split()[0])


def test_case32_two_thousand_short_workers_leave_no_growth(tmp_path: Path, loop: str) -> None:
    """32. 2,000 sequential short-lived copies (each exits at once and is restarted): asyncsup's
    fd and thread counts are the same after run 2,000 as after run 200, and its RSS grew less
    than 2 MiB (measured: about 0.4 MiB, flat from run 2,000 to 8,000). Both moments have one
    live copy, so the counts compare like for like."""
    (tmp_path / "runs").write_text("0\n")
    os.mkfifo(tmp_path / "go")
    worker = program(
        "w", SEQUENTIAL, directory=str(tmp_path), autorestart="always", flap_limit=100000, flap_window="1s"
    )
    with start(tmp_path, loop, "shim", worker) as ns:
        ns.wait_line(r"^w \| paused$", stream="stdout")
        supervisor = ns.supervisor()
        before = _usage(supervisor)
        with open(tmp_path / "go", "w"):
            pass  # the paused run reads EOF and exits
        ns.wait_line(r"^w \| done$", stream="stdout", timeout=120)
        after = _usage(supervisor)
        stop(ns)
    assert after[:2] == before[:2], f"fds, threads: {before[:2]} after run 200, {after[:2]} after 2,000"
    assert after[2] - before[2] < 2048, f"RSS {before[2]} KiB after run 200, {after[2]} KiB after 2,000"


# -- 33: under another init ---------------------------------------------------------------------------

INITS = {
    # name: (argv before asyncsup's, how to install it)
    "dumb-init": (["dumb-init"], "pip install dumb-init (in the dev extra)"),
    "tini -g": (["tini", "-g", "--"], "apt-get install tini (.ci/run does it)"),
}


def _init_argv(name: str) -> list[str]:
    """The init's argv, found next to this Python (pip installs dumb-init there) or on PATH."""
    argv, install = INITS[name]
    search = [str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]
    found = shutil.which(argv[0], path=os.pathsep.join(search))
    if found is None:
        reason = f"{argv[0]} is not installed: {install}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true forbids skipping")
        pytest.skip(reason)
    return [found, *argv[1:]]


@pytest.mark.parametrize("init", list(INITS))
def test_case33_under_dumb_init_or_tini_sigterm_drains_in_order(tmp_path: Path, loop: str, init: str) -> None:
    """33. dumb-init (setsid mode) or `tini -g` is PID 1 and asyncsup pid 2. SIGTERM to PID 1
    reaches asyncsup once (both send it to asyncsup's process group, which holds only asyncsup:
    programs have their own sessions); asyncsup drains in dependency order (app, which depends
    on db, stops first), each program gets one SIGTERM from asyncsup, and the init exits 0."""
    db = program("db", child("print_signals.py"))
    app = program("app", child("print_signals.py"), depends_on=["db"])
    config = write_config(tmp_path / "asyncsup.toml", HEADER + db + app)
    argv = [*_init_argv(init), *asyncsup_argv(config, loop)]
    with Namespace(argv, env=asyncsup_env(loop), cwd=tmp_path) as ns:
        ns.wait_line(r"^(db|app) \| ready", stream="stdout", count=2)
        (asyncsup,) = children_of(ns.init)
        assert ns.ns_pid(asyncsup) == 2 and "asyncsup" in cmdline(asyncsup)
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0, "\n".join(ns.lines())
    assert printed_signals(ns) == ["app | got SIGTERM", "db | got SIGTERM"]
    assert len(ns.stderr.matching(r"SIGTERM received: draining")) == 1
    app_stopped, db_stopping = where(ns, r" app: STOPPING -> STOPPED"), where(ns, r" db: RUNNING -> STOPPING")
    assert app_stopped and db_stopping and app_stopped[0] < db_stopping[0], "\n".join(ns.lines())


# -- 34: user code takes SIGCHLD ----------------------------------------------------------------------

HIJACK_HANDLERS = """
import asyncio
import signal
import sys

from asyncsup import handler


def on_sigchld(signum, frame):
    pass


@handler("Hijack")
async def hijack(body: dict) -> None:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "read line; exit 3", stdin=asyncio.subprocess.PIPE
    )
    signal.signal(signal.SIGCHLD, on_sigchld)  # while the child is alive
    proc.stdin.close()  # now it exits 3
    try:
        code = await asyncio.wait_for(proc.wait(), 2)
    except asyncio.TimeoutError:
        code = "timed out"
    sys.stdout.write(f"wait: {code}\\n")
    sys.stdout.flush()
"""

HIJACK_CONSUMER = """
[transports]
jobs = "sqlite:///queue.db?queue=jobs"
[consumers.main]
transports = ["jobs"]
handlers = ["hijack_handlers"]
"""


def test_case34_a_sigchld_handler_in_user_code_is_reported_and_spares_programs(
    tmp_path: Path, loop: str
) -> None:
    """34. An inline handler starts an asyncio subprocess, then calls signal.signal(SIGCHLD, h).

    On asyncio the wait still returns 3. On uvloop it never returns (libuv's SIGCHLD handler is
    gone; the handler's own timeout ends it here): asyncsup logs an ERROR that says so and names
    the handler, instead of a silent hang. Either way asyncsup's own programs are watched through
    pidfds: a program that exits afterwards is seen exiting, and SIGTERM drains to exit 0."""
    (tmp_path / "hijack_handlers.py").write_text(HIJACK_HANDLERS)
    os.mkfifo(tmp_path / "go")
    later = program("later", "read x < go; exit 4", directory=str(tmp_path))
    config = write_config(tmp_path / "asyncsup.toml", HEADER + HIJACK_CONSUMER + later)
    env = asyncsup_env(loop, PYTHONPATH=f"{ROOT}:{tmp_path}")
    send = [PYTHON, "-m", "asyncsup", "send", "-c", str(config), "jobs", "Hijack", json.dumps({})]
    sent = subprocess.run(send, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    with Namespace(asyncsup_argv(config, loop), env=env, cwd=tmp_path) as ns:
        waited = ns.wait_line(r"^wait: ", stream="stdout")[0]
        if loop == "uvloop":
            assert waited == "wait: timed out"  # PID1.md §0: what uvloop does; asyncsup cannot undo it
            ns.wait_line(r"ERROR .*SIGCHLD handler hijack_handlers\.on_sigchld .*uvloop")
        else:
            assert waited == "wait: 3"
        with open(tmp_path / "go", "w"):
            pass  # `later` reads EOF and exits 4
        ns.wait_line(r"later: RUNNING -> EXITED \(exit 4\)")
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0, "\n".join(ns.lines())
    if loop == "asyncio":
        assert not ns.stderr.matching("SIGCHLD handler")
