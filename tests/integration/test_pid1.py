"""PID-1 conformance: asyncsup as the init of a fresh PID namespace (reference PID1.md §8).

Each test names its case number. Cases about reaping and signals run in both PID-1 designs:
``shim`` (the default: PID 1 is a tiny init, the supervisor is pid 2) and ``in-process``
(``--no-shim``: the supervisor is PID 1 and reaps with asyncsup/reaper.py); every case runs on
asyncio and uvloop. One namespace per case; waits are for log lines or kernel state, bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pid1 import (
    HEADER,
    LOOPS,
    MODES,
    ORPHAN,
    PYTHON,
    ROOT,
    Namespace,
    alive,
    assert_clean_log,
    asyncsup_argv,
    asyncsup_env,
    child,
    cmdline,
    orphan_statuses,
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


# -- reaping ----------------------------------------------------------------------------------------


def test_case01_case04_orphans_of_every_shape_are_reaped_with_their_status(
    tmp_path: Path, loop: str, mode: str
) -> None:
    """1. A background job outlives its worker; 4. a setsid'ed one and a 2-level chain too.

    Each is reaped by PID 1 (only a parent can reap) and logged with its own exit code."""
    worker = program(
        "worker",
        "(sleep .3; exit 7) & setsid sh -c 'sleep .3; exit 4' & "
        "sh -c '(sh -c \"sleep .3; exit 9\" &)'; exit 0",
    )
    with start(tmp_path, loop, mode, worker) as ns:
        ns.wait_line(r"worker: \w+ -> EXITED \(exit 0\)")
        ns.wait_line(ORPHAN, count=3)
        assert sorted(orphan_statuses(ns)) == ["exit 4", "exit 7", "exit 9"]
        assert wait_until(lambda: ns.zombies() == [], 10, "no zombie in the namespace")
        stop(ns)
    assert_clean_log(ns)


def test_shim_logs_follow_the_configured_format(tmp_path: Path, loop: str) -> None:
    """With --log-format json every stderr line is JSON, the shim's orphan lines included."""
    worker = program("worker", "sh -c '(sleep .2; exit 7) &'; exec sleep 600")
    with start(tmp_path, loop, "shim", worker, flags=("--log-format", "json")) as ns:
        ns.wait_line(r"reaped orphan pid")
        stop(ns)
    assert [line for line in ns.lines() if not line.startswith("{")] == []
    records = [json.loads(line) for line in ns.lines()]
    reaped = [r for r in records if r["msg"].startswith("reaped orphan pid")]
    assert [(r["logger"], r["msg"].endswith("(exit 7)")) for r in reaped] == [("asyncsup.reaper", True)]


def test_case02_fifty_orphans_leave_no_zombie(tmp_path: Path, loop: str, mode: str) -> None:
    """2. A worker makes 50 orphans that exit soon: all reaped, process count back to baseline."""
    worker = program(
        "worker",
        "for i in $(seq 50); do sh -c '(sleep .3; exit 3) &'; done; exec sleep 600",
    )
    with start(tmp_path, loop, mode, worker) as ns:
        ns.wait_line(ORPHAN, count=50)
        assert set(orphan_statuses(ns)) == {"exit 3"}
        baseline = 2 if mode == "in-process" else 3  # (shim,) supervisor, `sleep 600`
        wait_until(lambda: len(ns.pids()) == baseline, 10, f"{baseline} processes left")
        assert ns.zombies() == []
        stop(ns)


def test_case03_every_exit_code_is_exact_while_orphans_churn(tmp_path: Path, loop: str, mode: str) -> None:
    """3. 40 workers `exit k`, 8 of them double-forking: every code exact, no 255, no hang."""
    worker = program(
        "worker",
        'k=$ASYNCSUP_PROCESS_NUM; [ $((k % 5)) -eq 0 ] && (sh -c "sleep .1; exit 99" &); exit $k',
        numprocs=40,
    )
    with start(tmp_path, loop, mode, worker) as ns:
        exits = ns.wait_line(r"worker:\d+: \w+ -> (EXITED|FATAL|BACKOFF)", count=40, timeout=40)
        codes = {}
        for line in exits:
            found = re.search(r"worker:(\d+): (\w+) -> (\w+) \((?:exit )?([^);]*)", line)
            assert found, line
            codes[int(found[1])] = (found[3], found[4])
        assert codes == {k: ("EXITED", str(k)) for k in range(40)}
        wait_until(lambda: ns.zombies() == [], 10, "no zombie in the namespace")
        stop(ns)
    assert_clean_log(ns)


PROBE_HANDLERS = """
import asyncio
import subprocess
import sys

from asyncsup import handler


@handler("Probe")
async def probe(body: dict) -> None:
    in_thread = await asyncio.to_thread(subprocess.run, ["sh", "-c", "exit 5"])
    on_loop = await asyncio.create_subprocess_exec("sh", "-c", "exit 6")
    blocking = subprocess.run(["sh", "-c", "exit 4"])
    codes = (in_thread.returncode, await on_loop.wait(), blocking.returncode)
    sys.stdout.write(f"probe {body['n']} {codes[0]} {codes[1]} {codes[2]}\\n")  # one write
    sys.stdout.flush()


@handler("Slow")
async def slow(body: dict) -> None:
    sys.stdout.write(f"start {body['n']}\\n")
    sys.stdout.flush()
    await asyncio.sleep(0.5)
    sys.stdout.write(f"done {body['n']}\\n")
    sys.stdout.flush()
"""


CONSUMER = """
[transports]
jobs = "sqlite:///queue.db?queue=jobs"
[consumers.main]
transports = ["jobs"]
handlers = ["probe_handlers"]
concurrency = 4
"""


def queue_messages(tmp_path: Path, config: Path, kind: str, count: int) -> dict[str, str]:
    """Write the handlers, send `count` messages before asyncsup starts; the env to run with."""
    (tmp_path / "probe_handlers.py").write_text(PROBE_HANDLERS)
    env = asyncsup_env("asyncio", PYTHONPATH=f"{ROOT}:{tmp_path}")
    bodies = "".join(json.dumps({"n": n}) + "\n" for n in range(count))
    send = [PYTHON, "-m", "asyncsup", "send", "-c", str(config), "jobs", kind, "-"]
    sent = subprocess.run(send, input=bodies, text=True, env=env, cwd=tmp_path, capture_output=True)
    assert sent.returncode == 0, sent.stderr
    return env


def queue_stats(tmp_path: Path, config: Path, env: dict[str, str]) -> dict[str, int]:
    stats = [PYTHON, "-m", "asyncsup", "stats", "-c", str(config), "--json"]
    out = subprocess.run(stats, text=True, env=env, cwd=tmp_path, capture_output=True, check=True)
    (jobs,) = [t for t in json.loads(out.stdout) if t["transport"] == "jobs"]
    return {key: jobs[key] for key in ("ready", "in_flight", "failed")}


def test_case05_handler_subprocesses_keep_their_status_while_orphans_churn(
    tmp_path: Path, loop: str, mode: str
) -> None:
    """5. A consumer handler runs subprocesses three ways (a thread, the loop, blocking) while a
    program makes orphans nonstop: user code sees 5, 6 and 4, never 0 or 255."""
    churn = program("churn", "while :; do sh -c '(exit 3) &'; sleep .01; done")
    config = write_config(tmp_path / "asyncsup.toml", HEADER + CONSUMER + churn)
    env = {**queue_messages(tmp_path, config, "Probe", 12), "ASYNCSUP_LOOP": loop}
    argv = asyncsup_argv(config, loop, *MODES[mode])
    with Namespace(argv, env=env, cwd=tmp_path) as ns:
        probes = ns.wait_line(r"^probe \d+ ", stream="stdout", count=12)
        ns.wait_line(ORPHAN, count=5)
        stop(ns)
    assert sorted(line.split()[2:] for line in probes) == [["5", "6", "4"]] * 12
    assert_clean_log(ns)


# -- stopping ---------------------------------------------------------------------------------------


def two_signal_printers(**keys: Any) -> str:
    return program("sig", child("print_signals.py", *keys.pop("args", ())), numprocs=2, **keys)


def got_signals(ns: Namespace) -> list[str]:
    return sorted(line for line in ns.lines("stdout") if re.match(r"sig:\d \| got ", line))


@pytest.mark.parametrize("sender", ["host", "inside"])
def test_case06_case07_sigterm_drains_workers_and_in_flight_messages(
    tmp_path: Path, loop: str, mode: str, sender: str
) -> None:
    """6. `docker stop` (SIGTERM from the host) and 7. `docker exec kill -TERM 1` (from inside,
    which PID 1 drops unless a handler is installed), with two workers and two messages in
    flight: the handlers finish and ack, each worker gets exactly one SIGTERM, exit 0."""
    config = write_config(tmp_path / "asyncsup.toml", HEADER + CONSUMER + two_signal_printers())
    env = {**queue_messages(tmp_path, config, "Slow", 2), "ASYNCSUP_LOOP": loop}
    with Namespace(asyncsup_argv(config, loop, *MODES[mode]), env=env, cwd=tmp_path) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        ns.wait_line(r"^start \d", stream="stdout", count=2)
        if sender == "host":
            ns.kill(signal.SIGTERM)
        else:
            inside = ns.exec_inside("kill -TERM 1")
            assert inside.returncode == 0, inside.stderr
        assert ns.wait() == 0, "\n".join(ns.lines())
    assert sorted(ns.stdout.matching(r"^done \d")) == ["done 0", "done 1"]
    assert got_signals(ns) == ["sig:0 | got SIGTERM", "sig:1 | got SIGTERM"]
    assert queue_stats(tmp_path, config, env) == {"ready": 0, "in_flight": 0, "failed": 0}
    assert_clean_log(ns)


def test_case08_a_worker_ignoring_sigterm_is_killed_with_its_group(tmp_path: Path, loop: str) -> None:
    """8. `trap '' TERM` worker, stop_timeout 0.5s: SIGKILL to its group (grandchild too), exit 0.

    A second program holds the shutdown open, so the group kill is seen while PID 1 still runs."""
    stubborn = program("stubborn", child("ready_then.py", "ignore-term"), stop_timeout="0.5s")
    holder = program("holder", child("print_signals.py", "--ignore-term"), stop_timeout="2s")
    with start(tmp_path, loop, "shim", stubborn, holder) as ns:
        line = ns.wait_line(r"^stubborn \| grandchild pid \d+", stream="stdout")[0]
        ns.wait_line(r"^holder \| ready", stream="stdout")
        worker = ns.find("ignore-term")[0]
        grandchild = ns.host_pid(int(line.split()[-1]))
        ns.kill(signal.SIGTERM)
        ns.wait_line(r"stubborn: still running .* sending SIGKILL")
        ns.wait_line(r"stubborn: \w+ -> STOPPED \(killed by SIGKILL\)")
        wait_until(lambda: not alive(worker) and not alive(grandchild), 5, "the group dead")
        assert alive(ns.init), "asyncsup should still be draining the holder"
        assert ns.wait() == 0


def test_case09_a_second_sigterm_stops_at_once_with_143(tmp_path: Path, loop: str) -> None:
    """9. A 60 s drain, workers ignoring SIGTERM; a second SIGTERM forces: SIGKILL, exit 143."""
    workers = two_signal_printers(args=["--ignore-term"], stop_timeout="60s")
    header = '[asyncsup]\nshutdown_timeout = "60s"\n'
    with start(tmp_path, loop, "shim", workers, header=header) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        ns.kill(signal.SIGTERM)
        ns.wait_line(r"^sig:\d \| got SIGTERM", stream="stdout", count=2)
        ns.kill(signal.SIGTERM)
        assert ns.wait(timeout=20) == 143  # far below the 60 s drain: the stop was immediate
    assert_clean_log(ns)


def test_case10_sigint_drains_quietly_and_a_second_one_forces(tmp_path: Path, loop: str, mode: str) -> None:
    """10. SIGINT from the host: a graceful stop, no KeyboardInterrupt; a second SIGINT: 130."""
    with start(tmp_path, loop, mode, program("idle", "exec sleep 600")) as ns:
        ns.wait_line(r"idle: \w+ -> RUNNING")
        ns.kill(signal.SIGINT)
        assert ns.wait() == 0
    assert "KeyboardInterrupt" not in "\n".join(ns.lines())

    workers = two_signal_printers(args=["--ignore-term"], stop_timeout="60s")
    header = '[asyncsup]\nshutdown_timeout = "60s"\n'
    with start(tmp_path, loop, mode, workers, header=header) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        ns.kill(signal.SIGINT)
        ns.wait_line(r"SIGINT received")
        ns.kill(signal.SIGINT)
        assert ns.wait() == 130
    assert_clean_log(ns)


def test_case25_one_ctrl_c_on_a_tty_is_one_sigint(tmp_path: Path, loop: str, mode: str) -> None:
    """25. A pty attached, ^C typed once: asyncsup handles exactly one SIGINT (the shim does not
    deliver it twice) and drains; workers, in their own sessions, get no SIGINT, one SIGTERM."""
    with start(tmp_path, loop, mode, two_signal_printers(), tty=True) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        ns.write_tty(b"\x03")
        assert ns.wait() == 0, "\n".join(ns.lines("stdout"))
    everything = ns.lines("stdout")
    assert len([line for line in everything if "SIGINT received:" in line]) == 1, everything
    assert got_signals(ns) == ["sig:0 | got SIGTERM", "sig:1 | got SIGTERM"]
    assert not [line for line in everything if "Traceback" in line or "KeyboardInterrupt" in line]


def test_case11_sigkill_of_pid1_takes_the_whole_namespace(tmp_path: Path, loop: str, mode: str) -> None:
    """11. A worker tree with a setsid'ed daemon; SIGKILL to PID 1: every process is gone."""
    worker = program("worker", "setsid sleep 601 & sleep 602 & exec sleep 603")
    with start(tmp_path, loop, mode, worker) as ns:
        wait_until(lambda: len(ns.find("sleep 60")) == 3, 10, "the three sleeps")
        everyone = ns.pids()
        ns.kill(signal.SIGKILL)
        ns.wait()
        wait_until(lambda: not any(alive(p) for p in everyone), 10, "every process gone")


def test_case12_shim_exits_137_when_the_supervisor_is_sigkilled(tmp_path: Path, loop: str) -> None:
    """12. Shim mode: the supervisor (pid 2) dies by SIGKILL (an OOM kill): PID 1 exits 137."""
    worker = program("worker", "setsid sleep 601 & exec sleep 602")
    with start(tmp_path, loop, "shim", worker) as ns:
        wait_until(lambda: len(ns.find("sleep 60")) == 2, 10, "the two sleeps")
        supervisor = ns.supervisor()
        assert supervisor != ns.init and ns.ns_pid(supervisor) == 2
        everyone = ns.pids()
        os.kill(supervisor, signal.SIGKILL)
        assert ns.wait() == 137
        wait_until(lambda: not any(alive(p) for p in everyone), 10, "every process gone")


def test_case31_a_live_orphan_does_not_hold_the_shutdown_and_dies_with_pid1(
    tmp_path: Path, loop: str, mode: str
) -> None:
    """31. A daemon (own session, stdio closed) is alive at SIGTERM: the drain does not wait for
    it (it is nobody's program), asyncsup exits 0, and the kernel's namespace teardown kills it."""
    worker = program("worker", "sh -c 'setsid sleep 604 >/dev/null 2>&1 &'; exec sleep 605")
    with start(tmp_path, loop, mode, worker) as ns:
        # Exactly `sleep 604`: the shells that start it have "sleep 604" in their command lines too.
        daemon = lambda: [p for p in ns.find("sleep 604") if cmdline(p) == ["sleep", "604"]]  # noqa: E731
        orphan = wait_until(daemon, 10, "the orphan")[0]
        reparented = lambda: proc_status(orphan).get("PPid") == str(ns.init)  # noqa: E731
        wait_until(reparented, 10, "the orphan re-parented to PID 1")
        stop(ns)
        wait_until(lambda: not alive(orphan), 10, "the orphan killed with the namespace")
    assert not [line for line in ns.lines() if "SIGKILL" in line]


# -- signals ----------------------------------------------------------------------------------------


def test_case13_forwarded_signals_reach_each_worker_exactly_once(
    tmp_path: Path, loop: str, mode: str
) -> None:
    """13. HUP, USR1, USR2 from the host reach both workers once each; the supervisor survives."""
    workers = two_signal_printers(forward_signals=["HUP", "USR1", "USR2"])
    with start(tmp_path, loop, mode, workers) as ns:
        ns.wait_line(r"^sig:\d \| ready", stream="stdout", count=2)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            ns.kill(sig)
            ns.wait_line(rf"^sig:\d \| got {sig.name}$", stream="stdout", count=2)
        assert proc_state(ns.supervisor()) in ("S", "R")
        stop(ns)
    expected = [f"sig:{n} | got {s}" for n in (0, 1) for s in ("SIGHUP", "SIGUSR1", "SIGUSR2")]
    assert got_signals(ns) == sorted([*expected, "sig:0 | got SIGTERM", "sig:1 | got SIGTERM"])


# QUIT is left out on purpose: asyncsup documents it as a graceful stop, like TERM and INT.
CATCHABLE = [
    s
    for s in signal.Signals
    if s < 32
    and s
    not in (
        signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
        signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
    )
]  # fmt: skip


def test_case14_no_signal_kills_or_stops_the_supervisor(tmp_path: Path, loop: str, mode: str) -> None:
    """14. Every other catchable signal 1..31, one by one: the supervisor neither dies nor stops,
    and reaping still works afterwards (an orphan made inside the namespace is reaped)."""
    with start(tmp_path, loop, mode, program("idle", "exec sleep 600")) as ns:
        ns.wait_line(r"idle: \w+ -> RUNNING")
        supervisor = ns.supervisor()
        for sig in CATCHABLE:
            ns.kill(sig)
        made = ns.exec_inside("(sh -c 'sleep .2; exit 6' &)")
        assert made.returncode == 0, made.stderr
        ns.wait_line(ORPHAN)
        assert orphan_statuses(ns) == ["exit 6"]
        for pid in (ns.init, supervisor):
            assert proc_state(pid) in ("S", "R"), f"pid {pid}: {proc_status(pid).get('State')}"
        stop(ns)
    assert_clean_log(ns)


# -- exits and spawn failures -----------------------------------------------------------------------


def test_case16_a_critical_program_failing_sets_the_exit_code(tmp_path: Path, loop: str) -> None:
    """16 (as scoped for now): a critical program with autorestart=never exits 3: asyncsup exits 3."""
    critical = program("main", "exit 3", critical=True)
    other = program("other", "exec sleep 600")
    with start(tmp_path, loop, "shim", critical, other) as ns:
        assert ns.wait() == 3, "\n".join(ns.lines())


@pytest.mark.parametrize("what", ["missing", "not-executable", "missing-as-nobody"])
def test_case17_a_command_that_cannot_start_ends_fatal_without_zombies(
    tmp_path: Path, loop: str, what: str
) -> None:
    """17. /nonexistent, a non-executable file, or /nonexistent through the user wrapper:
    the spawn error is logged, retried, then FATAL; nothing left behind."""
    noexec = tmp_path / "noexec"
    noexec.write_text("#!/bin/sh\n")
    command, reason, extra = {
        "missing": ("/nonexistent", "No such file or directory", {}),
        "not-executable": (str(noexec), "Permission denied", {}),
        "missing-as-nobody": ("/nonexistent", "No such file or directory", {"user": "nobody"}),
    }[what]
    retried = {"startsecs": "1s", "startretries": 2, "backoff": {"initial": "0.1s", "jitter": 0}}
    worker = program("worker", [command], **retried, **extra)
    with start(tmp_path, loop, "shim", worker) as ns:
        ns.wait_line(r"worker: \w+ -> FATAL")
        assert any(reason in line for line in ns.lines()), "\n".join(ns.lines())
        assert ns.zombies() == []
        stop(ns)
    assert_clean_log(ns)


def test_case18_crash_loop_backs_off_then_gives_up_without_leaking(tmp_path: Path, loop: str) -> None:
    """18. `exit 1` at once, startretries=4, backoff 0.1 s doubling to 0.8 s: five starts with the
    documented delays, then FATAL; no zombie, and no fd or thread left over from the loop."""
    worker = program(
        "worker",
        "exit 1",
        startsecs="1s",
        startretries=4,
        backoff={"initial": "0.1s", "multiplier": 2, "max": "0.8s", "jitter": 0},
    )
    with start(tmp_path, loop, "shim", worker) as ns:
        ns.wait_line(r"worker: \w+ -> BACKOFF")
        supervisor = ns.supervisor()
        fds, threads = _fds(supervisor), proc_status(supervisor)["Threads"]
        ns.wait_line(r"worker: \w+ -> FATAL", timeout=30)
        delays = re.findall(r"worker: \w+ -> BACKOFF .*retry in ([\d.]+)s", "\n".join(ns.lines()))
        assert delays == ["0.10", "0.20", "0.40", "0.80"]
        assert len(ns.stderr.matching(r"worker: \w+ -> STARTING")) == 5
        assert ns.zombies() == []
        assert (_fds(supervisor), proc_status(supervisor)["Threads"]) == (fds, threads)
        stop(ns)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_case20_stopping_a_worker_kills_its_whole_pipeline(tmp_path: Path, loop: str) -> None:
    """20. A worker running `sleep | sleep &` stops: its whole process group is gone (killasgroup).

    A second program ignoring SIGTERM keeps asyncsup alive while we look."""
    pipeline = program("pipe", "sleep 601 | sleep 602 & exec sleep 603")
    holder = program("holder", child("print_signals.py", "--ignore-term"), stop_timeout="2s")
    with start(tmp_path, loop, "shim", pipeline, holder) as ns:
        ns.wait_line(r"^holder \| ready", stream="stdout")
        group = wait_until(lambda: len(ns.find("sleep 60")) == 3 and ns.find("sleep 60"), 10, "3")
        ns.kill(signal.SIGTERM)
        ns.wait_line(r"pipe: \w+ -> STOPPED")
        wait_until(lambda: not any(alive(p) for p in group), 5, "the pipeline gone")
        assert alive(ns.init)
        assert ns.wait() == 0


# -- what workers inherit ---------------------------------------------------------------------------


def test_case22_workers_see_only_stdio_even_with_inherited_fds(tmp_path: Path, loop: str) -> None:
    """22. asyncsup started with an inheritable file and listening socket: workers see 0, 1, 2."""
    leak_file = os.open("/etc/hostname", os.O_RDONLY)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        for fd in (leak_file, listener.fileno()):
            os.set_inheritable(fd, True)
        fds = (leak_file, listener.fileno())
        lister = program("w", child("ready_then.py", "fds"))
        with start(tmp_path, loop, "shim", lister, pass_fds=fds) as ns:
            line = ns.wait_line(r"^w \| fds ", stream="stdout")[0]
            stop(ns)
    finally:
        os.close(leak_file)
        listener.close()
    assert line == "w | fds 0 1 2"


def test_case23_case24_stdin_pipe_and_no_tty(tmp_path: Path, loop: str) -> None:
    """23. asyncsup's stdin is a pipe (`docker -i`): workers get /dev/null, and closing the pipe
    disturbs nobody. 24. No tty, stdout a pipe: no tty errors, worker lines relayed as they come."""
    fds_worker = program("f", child("ready_then.py", "fds"))
    ticker = program("t", child("ready_then.py", "tick", "0.3"))
    with start(tmp_path, loop, "shim", fds_worker, ticker, stdin=subprocess.PIPE) as ns:
        assert ns.wait_line(r"^f \| fd0 ", stream="stdout")[0] == "f | fd0 /dev/null"
        ns.wait_line(r"^t \| tick 1$", stream="stdout")
        ns._popen.stdin.close()  # type: ignore[union-attr]
        ns.wait_line(r"^t \| tick 3$", stream="stdout")  # still ticking, relayed while running
        stop(ns)
    text = "\n".join(ns.lines())
    for bad in ("tcsetpgrp", "Inappropriate ioctl", "Traceback"):
        assert bad not in text


def test_case26_worker_environment_is_ours_plus_overrides_minus_removals(
    tmp_path: Path, loop: str, mode: str
) -> None:
    """26. environment = {A = "x=y", B = "ünï", SECRET = false}: nothing else added or lost."""
    worker = program(
        "w", child("ready_then.py", "env"), environment={"A": "x=y", "B": "ünï", "SECRET": False}
    )
    with start(tmp_path, loop, mode, worker, env={"SECRET": "s3cret"}) as ns:
        line = ns.wait_line(r"^w \| \{", stream="stdout")[0]
        stop(ns)
    got = json.loads(line.removeprefix("w | "))
    expected = {k: v for k, v in asyncsup_env(loop, SECRET="s3cret").items() if k != "SECRET"}
    expected.update(A="x=y", B="ünï")
    documented = {  # what asyncsup tells every program (README); nothing else may appear
        "ASYNCSUP_PROGRAM": "w",
        "ASYNCSUP_PROCESS_NAME": "w",
        "ASYNCSUP_PROCESS_NUM": "0",
        "ASYNCSUP_CONFIG": str(tmp_path / "asyncsup.toml"),
        "ASYNCSUP_PYTHON": PYTHON,
    }
    expected.update(documented)
    assert {k: got.get(k) for k in set(got) | set(expected) if got.get(k) != expected.get(k)} == {}


def test_case27_a_worker_runs_as_nobody(tmp_path: Path, loop: str) -> None:
    """27. user = "nobody": Uid = Gid = 65534 x4, no root groups, HOME/USER/LOGNAME set, and a
    root-only place is not writable."""
    probe = (
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo \"login $HOME $USER $LOGNAME\"; "
        "if touch /root/.asyncsup-nobody-probe 2>/dev/null; then echo wrote; else echo denied; fi"
    )
    with start(tmp_path, loop, "shim", program("w", probe, user="nobody")) as ns:
        ns.wait_line(r"^w \| (wrote|denied)$", stream="stdout")
        stop(ns)
    out = {line.split(":")[0].removeprefix("w | "): line for line in ns.lines("stdout")}
    assert out["Uid"].split()[-4:] == ["65534"] * 4
    assert out["Gid"].split()[-4:] == ["65534"] * 4
    assert "0" not in out["Groups"].split()[3:]
    assert "w | login /nonexistent nobody nobody" in ns.lines("stdout")
    assert "w | denied" in ns.lines("stdout")


def test_case28_workers_start_with_nothing_blocked_or_ignored(tmp_path: Path, loop: str, mode: str) -> None:
    """28. The shim blocks every signal, Python ignores SIGPIPE: workers see SigBlk = SigIgn = 0."""
    probe = "grep -E '^Sig(Blk|Ign):' /proc/self/status"
    with start(tmp_path, loop, mode, program("w", probe)) as ns:
        ns.wait_line(r"^w \| SigIgn", stream="stdout")
        stop(ns)
    assert sorted(line.split()[-1] for line in ns.lines("stdout")) == ["0" * 16] * 2


# -- not PID 1 --------------------------------------------------------------------------------------


def test_case30_subreaper_reaps_orphans_when_not_pid1(tmp_path: Path, loop: str) -> None:
    """30. Not PID 1, `--subreaper`: orphans are re-parented to asyncsup and reaped."""
    worker = program("worker", "sh -c '(sleep .3; exit 7) &'; exec sleep 600")
    config = write_config(tmp_path / "a.toml", HEADER + worker)
    argv = asyncsup_argv(config, loop, "--subreaper")
    with Namespace(argv, env=asyncsup_env(loop), cwd=tmp_path, pid1=False) as run:
        run.wait_line(ORPHAN)
        assert orphan_statuses(run) == ["exit 7"]
        stop(run)


def test_case30_without_subreaper_asyncsup_warns_like_tini(tmp_path: Path, loop: str) -> None:
    """30. Not PID 1 and no `--subreaper`: a warning says orphans will not be reaped."""
    config = write_config(tmp_path / "a.toml", HEADER + program("idle", "exec sleep 600"))
    argv = asyncsup_argv(config, loop)
    with Namespace(argv, env=asyncsup_env(loop), cwd=tmp_path, pid1=False) as run:
        run.wait_line(r"idle: \w+ -> RUNNING")
        stop(run)
    assert any("WARNING" in line and "subreaper" in line for line in run.lines()), run.lines()
