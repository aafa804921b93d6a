"""Black-box tests of `asyncsup run` as a supervisor (not PID 1): states, restarts, stops, signals.

Each test writes a config, starts `python -m asyncsup run`, and reads what a user would read: the
state-change lines on stderr (`web: STARTING -> RUNNING (pid 42)`), the children's output on stdout,
the exit code, and /proc. No timing is asserted: tests wait for lines with generous bounds; where
delays matter (backoff) only lower bounds and ratios, which a slow machine cannot break, are checked.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Asyncsup, Harness

SUP = r"INFO asyncsup\.supervisor: "


def starts(run: Asyncsup, name: str) -> int:
    return len(run.matching(rf"{SUP}{name}: \w+ -> STARTING", "stderr"))


# -- backoff and flapping ---------------------------------------------------------------------------


def test_quick_failures_back_off_exponentially_then_go_fatal(supervise: Harness, loop_kind: str) -> None:
    """1. A program exits at once, 5 times (startretries = 4).
    2. Each retry waits initial * 2**n (jitter 0): the log says 0.10s, 0.20s, 0.40s, 0.80s, and the
       gaps between its state-change timestamps are at least that long and grow.
    3. After the 5th failed start it is FATAL and the log says why."""
    run = supervise(
        """
        [programs.crash]
        command = ["sh", "-c", "exit 1"]
        startsecs = "0.5s"
        startretries = 4
        backoff = { initial = "0.1s", multiplier = 2, max = "10s", jitter = 0 }
        """,
        loop=loop_kind,
    )
    fatal = run.wait_line(rf"{SUP}crash: STARTING -> FATAL", "stderr")
    assert "gave up after 5 failed starts" in fatal.string
    assert starts(run, "crash") == 5
    backoffs = run.matching(rf"{SUP}crash: STARTING -> BACKOFF \(exit 1; retry in ([\d.]+)s\)", "stderr")
    assert [m[1] for m in backoffs] == ["0.10", "0.20", "0.40", "0.80"]
    retries = run.matching(rf"{SUP}crash: BACKOFF -> STARTING", "stderr")
    delays = [supervise.log_time(b.string) for b in backoffs]
    delays = [supervise.log_time(r.string) - t for r, t in zip(retries, delays, strict=True)]
    for measured, nominal in zip(delays, (0.1, 0.2, 0.4, 0.8), strict=True):
        assert measured >= nominal - 0.002, delays  # a timer never fires early (ms log precision)
    assert delays[3] > delays[1] and delays[2] > delays[0], delays  # pairs 4x apart: robust to noise
    assert run.stop() == 0


def test_startsecs_zero_crash_loop_is_not_a_storm(supervise: Harness, loop_kind: str) -> None:
    """supervisord #1285: with startsecs = 0 a program that exits 0 at once is respawned forever.
    1. flap_limit = 5 per 10s: 5 starts at once, then starts wait 0.5s, 1s, 2s, 4s (flapping).
    2. By the time the 4s wait is announced, exactly 8 starts happened (not hundreds)."""
    run = supervise(
        """
        [programs.flap]
        command = ["true"]
        startsecs = 0
        autorestart = "always"
        flap_limit = 5
        flap_window = "10s"
        backoff = { initial = "0.5s", multiplier = 2, max = "10s", jitter = 0 }
        """,
        loop=loop_kind,
    )
    run.wait_line(r"flap: RUNNING -> BACKOFF \(exit 0, flapping; retry in 4\.00s\)", "stderr")
    waits = run.matching(r"flap: RUNNING -> BACKOFF \(exit 0, flapping; retry in ([\d.]+)s\)", "stderr")
    assert [m[1] for m in waits] == ["0.50", "1.00", "2.00", "4.00"]
    assert starts(run, "flap") == 8
    assert len(run.matching(r"flap: RUNNING -> EXITED \(exit 0; restarting\)", "stderr")) == 4
    assert run.stop() == 0


# -- restart policies -------------------------------------------------------------------------------


def test_restart_policies(supervise: Harness, loop_kind: str) -> None:
    """always restarts a clean exit; on-failure restarts only codes not in exitcodes; never does not.
    The decision is in the EXITED line ("; restarting" or not)."""
    run_then_exit = 'sleep 0.3; exit {}'
    run = supervise(
        f"""
        [programs.always]
        command = ["sh", "-c", "{run_then_exit.format(0)}"]
        startsecs = "0.1s"
        autorestart = "always"

        [programs.expected]
        command = ["sh", "-c", "{run_then_exit.format(3)}"]
        startsecs = "0.1s"
        autorestart = "on-failure"
        exitcodes = [0, 3]

        [programs.unexpected]
        command = ["sh", "-c", "{run_then_exit.format(4)}"]
        startsecs = "0.1s"
        autorestart = "on-failure"
        exitcodes = [0, 3]

        [programs.never]
        command = ["sh", "-c", "{run_then_exit.format(1)}"]
        startsecs = "0.1s"
        autorestart = "never"
        """,
        loop=loop_kind,
    )
    run.wait_line(r"expected: RUNNING -> EXITED \(exit 3\)$", "stderr")
    run.wait_line(r"never: RUNNING -> EXITED \(exit 1\)$", "stderr")
    run.wait_line(r"unexpected: RUNNING -> EXITED \(exit 4; restarting\)", "stderr", count=2)
    run.wait_line(r"always: RUNNING -> EXITED \(exit 0; restarting\)", "stderr", count=2)
    first = run.matching(r"always: STARTING -> RUNNING \(pid (\d+)\)", "stderr")
    assert len({m[1] for m in first}) == len(first) >= 2  # a new process each time
    assert run.stop() == 0
    assert starts(run, "expected") == 1
    assert starts(run, "never") == 1


def test_a_killed_running_process_is_restarted_at_once(supervise: Harness, loop_kind: str) -> None:
    """1. A process runs past startsecs. 2. kill -9. 3. A new pid is RUNNING, without any BACKOFF."""
    run = supervise(
        """
        [programs.web]
        command = ["sleep", "60"]
        startsecs = "0.1s"
        """,
        loop=loop_kind,
    )
    old = int(run.wait_line(r"web: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    os.kill(old, signal.SIGKILL)
    run.wait_line(r"web: RUNNING -> EXITED \(killed by SIGKILL; restarting\)", "stderr")
    new = int(run.wait_line(r"web: STARTING -> RUNNING \(pid (\d+)\)", "stderr", count=2)[1])
    assert new != old
    assert not run.matching("BACKOFF", "stderr")
    assert run.stop() == 0


# -- critical programs ------------------------------------------------------------------------------


def test_critical_exit_drains_the_others_and_sets_the_exit_code(
    supervise: Harness, loop_kind: str, tmp_path: Path
) -> None:
    """1. Both programs RUNNING. 2. The critical one (autorestart never) exits 3.
    3. asyncsup stops the other (its stop lines appear) and exits 3."""
    flag = tmp_path / "exit-now"
    run = supervise(
        f"""
        [programs.main]
        command = ["sh", "-c", "while [ ! -f {flag} ]; do sleep 0.05; done; exit 3"]
        startsecs = "0.1s"
        autorestart = "never"
        critical = true

        [programs.helper]
        command = ["sleep", "60"]
        startsecs = "0.1s"
        """,
        loop=loop_kind,
    )
    run.wait_line(r"main: STARTING -> RUNNING", "stderr")
    run.wait_line(r"helper: STARTING -> RUNNING", "stderr")
    flag.touch()
    assert run.wait_exit() == 3
    lines = run.texts("stderr")
    text = "\n".join(lines)
    assert "main: RUNNING -> EXITED (exit 3)" in text
    assert "main is critical and went EXITED (exit 3): stopping everything" in text
    assert "helper: RUNNING -> STOPPING (sent SIGTERM)" in text
    assert "helper: STOPPING -> STOPPED (killed by SIGTERM)" in text
    assert lines[-1].endswith("exit code 3")


def test_critical_program_going_fatal_exits_nonzero(supervise: Harness) -> None:
    run = supervise(
        """
        [programs.main]
        command = ["sh", "-c", "exit 0"]
        startsecs = "1s"
        startretries = 1
        critical = true
        backoff = { initial = "0.05s", jitter = 0 }

        [programs.helper]
        command = ["sleep", "60"]
        startsecs = 0
        """
    )
    assert run.wait_exit() == 1
    text = "\n".join(run.texts("stderr"))
    assert "main: STARTING -> FATAL (exit 0; gave up after 2 failed starts)" in text
    assert "helper: RUNNING -> STOPPING" in text


# -- dependencies and readiness ---------------------------------------------------------------------


def test_depends_on_starts_after_running_and_stops_before(
    supervise: Harness, loop_kind: str, tmp_path: Path
) -> None:
    """1. web depends on db; web's priority would start it first.
    2. web waits until db is RUNNING (db is ready when the test says so).
    3. On SIGTERM web is STOPPED before db is even sent its stop signal."""
    flag = tmp_path / "db-ready"
    run = supervise(
        f"""
        [programs.db]
        command = {supervise.child("wait_flag.py", flag)}
        startsecs = 0
        ready = {{ line = "^listening$" }}

        [programs.web]
        command = ["sleep", "60"]
        startsecs = 0
        priority = 1
        depends_on = ["db"]
        """,
        loop=loop_kind,
    )
    run.wait_line(r"web: waiting for db to be RUNNING", "stderr")
    run.wait_line(r"^db \| waiting 3$", "stdout")
    assert starts(run, "web") == 0
    flag.touch()
    run.wait_line(r"web: STARTING -> RUNNING", "stderr")
    assert run.stop() == 0
    lines = run.texts("stderr")

    def index(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert index("db: STARTING -> RUNNING") < index("web: STOPPED -> STARTING")
    assert index("web: STOPPING -> STOPPED") < index("db: RUNNING -> STOPPING")


def test_stop_signals_go_in_reverse_start_order(supervise: Harness, loop_kind: str) -> None:
    """DESIGN.md shutdown step 2: children get their stop signal in reverse start order. Start
    order is by priority (then name), so z (priority 1) starts first and is signalled last."""
    run = supervise(
        """
        [programs.z]
        command = ["sleep", "60"]
        startsecs = 0
        priority = 1

        [programs.a]
        command = ["sleep", "60"]
        startsecs = 0
        priority = 2

        [programs.m]
        command = ["sleep", "60"]
        startsecs = 0
        priority = 2
        """,
        loop=loop_kind,
    )
    for name in "zam":
        run.wait_line(rf"{name}: STARTING -> RUNNING", "stderr")
    assert run.stop() == 0
    started = [m[1] for m in run.matching(r"supervisor: (\w): STOPPED -> STARTING", "stderr")]
    signalled = [m[1] for m in run.matching(r"supervisor: (\w): RUNNING -> STOPPING", "stderr")]
    assert started == ["z", "a", "m"]
    assert signalled == ["m", "a", "z"]


@pytest.mark.parametrize("probe", ["line", "tcp", "command"])
def test_ready_check_holds_starting_until_it_passes(
    supervise: Harness, loop_kind: str, tmp_path: Path, probe: str
) -> None:
    """1. startsecs = 0, so only the ready check keeps the program STARTING.
    2. While the child prints "waiting N", it stays STARTING.
    3. The test creates the flag: the child gets ready, asyncsup sees it, RUNNING."""
    flag = tmp_path / "ready-flag"
    port = supervise.free_port()
    command, ready = {
        "line": (supervise.child("wait_flag.py", flag), '{ line = "^listening$" }'),
        "tcp": (
            supervise.child("tcp_late.py", port, flag),
            f'{{ tcp = "127.0.0.1:{port}", interval = "0.05s" }}',
        ),
        "command": (
            supervise.child("wait_flag.py", flag),
            f'{{ command = ["test", "-f", {supervise.toml_str(flag)}], interval = "0.05s" }}',
        ),
    }[probe]
    run = supervise(
        f"""
        [programs.svc]
        command = {command}
        startsecs = 0
        ready = {ready}
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^svc \| waiting", "stdout", count=4)
    assert not run.matching(r"svc: STARTING -> RUNNING", "stderr")
    flag.touch()
    run.wait_line(r"svc: STARTING -> RUNNING \(pid \d+\)", "stderr")
    run.wait_line(r"^svc \| listening$", "stdout")  # another pipe: may arrive after the log line
    assert run.stop() == 0


def test_ready_line_cut_across_two_writes_still_matches(supervise: Harness, loop_kind: str) -> None:
    """A program prints its ready line in two writes (as a buffered logger may): "listen", then
    "ing\\n" a moment later. It is one line, and it matches `^listening$`."""
    run = supervise(
        """
        [programs.svc]
        command = ["sh", "-c", "printf listen; sleep 0.3; printf 'ing\\\\n'; exec sleep 60"]
        startsecs = 0
        startretries = 0
        ready = { line = "^listening$", timeout = "5s" }
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^svc \| listening$", "stdout")
    run.wait_line(r"svc: STARTING -> (RUNNING|STOPPING)", "stderr")
    assert run.matching(r"svc: STARTING -> RUNNING", "stderr")
    assert run.stop() == 0


def test_ready_timeout_counts_as_a_failed_start(supervise: Harness, loop_kind: str) -> None:
    run = supervise(
        """
        [programs.mute]
        command = ["sleep", "60"]
        startsecs = 0
        startretries = 1
        ready = { line = "never printed", timeout = "0.3s" }
        backoff = { initial = "0.05s", jitter = 0 }
        """,
        loop=loop_kind,
    )
    fatal = run.wait_line(r"mute: \w+ -> FATAL", "stderr")
    assert "gave up after 2 failed starts" in fatal.string
    assert len(run.matching(r"mute: not ready within 0.3s; stopping it", "stderr")) == 2
    assert not run.matching(r"mute: STARTING -> RUNNING", "stderr")
    assert run.stop() == 0


# -- stopping ---------------------------------------------------------------------------------------


def test_a_child_ignoring_sigterm_gets_sigkill_after_stop_timeout(supervise: Harness, loop_kind: str) -> None:
    run = supervise(
        """
        [programs.stubborn]
        command = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]
        startsecs = 0
        stop_timeout = "0.5s"
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^stubborn \| ready$", "stdout")
    pid = int(run.wait_line(r"stubborn: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    assert run.stop() == 0
    text = "\n".join(run.texts("stderr"))
    assert "stubborn: still running 0.5s after SIGTERM; sending SIGKILL" in text
    assert "stubborn: STOPPING -> STOPPED (killed by SIGKILL)" in text
    assert supervise.proc_stat(pid) is None or supervise.proc_stat(pid)[0] == "Z"  # type: ignore[index]


@pytest.mark.parametrize("stop_signal", ["TERM", "INT"])
def test_stop_leaves_no_process_of_the_group_behind(supervise: Harness, stop_signal: str) -> None:
    """A pipeline in the background: with INT, sh's background jobs ignore the stop signal
    (POSIX), so only the group SIGKILL after the main process exits gets rid of them."""
    run = supervise(
        f"""
        [programs.pipe]
        command = ["sh", "-c", "yes | tail -f /dev/null & echo started; sleep 60"]
        startsecs = 0
        stop_signal = "{stop_signal}"
        stop_timeout = "5s"
        """
    )
    pid = int(run.wait_line(r"pipe: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    run.wait_line(r"^pipe \| started$", "stdout")
    group = supervise.pids_in_group(pid)
    assert len(group) >= 3, group  # sh, yes, tail (and sleep once forked)
    assert run.stop() == 0
    assert supervise.wait_gone(group) == []
    assert supervise.pids_in_group(pid) == []


def test_leftovers_of_a_process_that_exited_are_killed_before_it_restarts(supervise: Harness) -> None:
    """1. The main process exits by itself; its background pipeline lives on in its group.
    2. Before the next copy starts, what the last one left is killed (PID1.md #21), so no stray
       consumer runs beside the new copy. (At the exit itself it is left alone: an orphan that
       outlives its parent is reaped with its own status, PID1.md #1.)"""
    run = supervise(
        """
        [programs.leaky]
        command = ["sh", "-c", "yes | tail -f /dev/null & echo started; sleep 0.3"]
        startsecs = 0
        autorestart = "always"
        """
    )
    pid = int(run.wait_line(r"leaky: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    run.wait_line(r"^leaky \| started$", "stdout")
    group = [p for p in supervise.pids_in_group(pid) if p != pid]
    assert group, "the pipeline should be running"
    run.wait_line(rf"leaky: killed what the previous copy left in process group {pid}$", "stderr")
    assert supervise.wait_gone(group) == []
    assert run.stop() == 0


def test_leftovers_of_an_exited_program_do_not_outlive_asyncsup(supervise: Harness) -> None:
    """autorestart = "never": the main process exits, its pipeline lives on; when asyncsup stops,
    that group goes too (not PID 1 here: nobody else would clean it up)."""
    run = supervise(
        """
        [programs.leaky]
        command = ["sh", "-c", "yes | tail -f /dev/null & echo started; sleep 0.2"]
        startsecs = 0
        autorestart = "never"
        """
    )
    pid = int(run.wait_line(r"leaky: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    run.wait_line(r"^leaky \| started$", "stdout")
    group = [p for p in supervise.pids_in_group(pid) if p != pid]
    assert group, "the pipeline should be running"
    run.wait_line(r"leaky: RUNNING -> EXITED \(exit 0\)", "stderr")
    assert run.stop() == 0
    assert supervise.wait_gone(group, timeout=5) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_forces_the_stop(supervise: Harness, loop_kind: str, sig: signal.Signals) -> None:
    """1. A child ignores SIGTERM with a long stop_timeout: the drain would take 30 s.
    2. The same signal again: the child is SIGKILLed now and asyncsup exits 128 + N."""
    run = supervise(
        """
        [asyncsup]
        shutdown_timeout = "60s"

        [programs.slow]
        command = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]
        startsecs = 0
        stop_timeout = "30s"
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^slow \| ready$", "stdout")
    pid = int(run.wait_line(r"slow: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    run.signal(sig)
    run.wait_line(r"slow: RUNNING -> STOPPING \(sent SIGTERM\)", "stderr")
    run.signal(sig)
    assert run.wait_exit() == 128 + sig
    assert supervise.wait_gone([pid]) == []
    text = "\n".join(run.texts("stderr"))
    assert f"{sig.name} received again: stopping now" in text
    assert "slow: STOPPING -> STOPPED (killed by SIGKILL)" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


def test_the_drain_deadline_forces_the_stop_and_exits_1(supervise: Harness, loop_kind: str) -> None:
    """shutdown_timeout is the one deadline: a child that ignores SIGTERM with a longer
    stop_timeout is SIGKILLed when it passes, and the cut-short drain exits 1."""
    run = supervise(
        """
        [asyncsup]
        shutdown_timeout = "0.5s"

        [programs.slow]
        command = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]
        startsecs = 0
        stop_timeout = "30s"
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^slow \| ready$", "stdout")
    pid = int(run.wait_line(r"slow: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    assert run.stop() == 1
    assert supervise.wait_gone([pid]) == []
    text = "\n".join(run.texts("stderr"))
    assert "slow: STOPPING -> STOPPED (killed by SIGKILL)" in text
    assert "forced: shutdown_timeout of 0.5s reached), exit code 1" in text


def test_a_critical_program_that_cannot_start_exits_127(supervise: Harness) -> None:
    run = supervise(
        """
        [programs.main]
        command = "/nonexistent/program"
        startretries = 0
        critical = true
        """
    )
    assert run.wait_exit() == 127
    text = "\n".join(run.texts("stderr"))
    assert "main: cannot start '/nonexistent/program': No such file or directory" in text
    assert "main: STARTING -> FATAL (could not start: ENOENT; gave up after 1 failed start" in text


# -- signals ----------------------------------------------------------------------------------------


def test_other_signals_do_not_kill_asyncsup(supervise: Harness, loop_kind: str) -> None:
    run = supervise(
        """
        [programs.web]
        command = ["sleep", "60"]
        startsecs = 0
        """,
        loop=loop_kind,
    )
    pid = int(run.wait_line(r"web: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH):
        run.signal(sig)
        run.wait_line(rf"INFO asyncsup: {sig.name} received", "stderr")
        assert run.proc.poll() is None
        assert supervise.proc_stat(run.pid)[0] in "RS"  # type: ignore[index]
    assert supervise.proc_stat(pid) is not None  # the child was not disturbed either
    assert starts(run, "web") == 1
    assert run.stop() == 0


def test_forward_signals_relays_exactly_one_signal(supervise: Harness, loop_kind: str) -> None:
    """1. forward_signals = ["HUP"]: one HUP to asyncsup -> one "got SIGHUP" from the child.
    2. USR1 is not forwarded: the child never sees it.
    3. On stop the child gets exactly one SIGTERM."""
    run = supervise(
        f"""
        [programs.sig]
        command = {supervise.child("print_signals.py")}
        startsecs = 0
        forward_signals = ["HUP"]
        """,
        loop=loop_kind,
    )
    run.wait_line(r"^sig \| ready", "stdout")
    run.signal(signal.SIGHUP)
    run.wait_line(r"^sig \| got SIGHUP$", "stdout")
    run.wait_line(r"SIGHUP received: relayed to 1 program", "stderr")
    run.signal(signal.SIGUSR1)
    run.wait_line(r"SIGUSR1 received: relayed to 0 program", "stderr")
    assert run.stop() == 0
    got = [line for line in run.texts("stdout") if line.startswith("sig | got ")]
    assert got == ["sig | got SIGHUP", "sig | got SIGTERM"]


# -- environment ------------------------------------------------------------------------------------


def test_environment_overrides_removals_expansion_and_process_identity(
    supervise: Harness, loop_kind: str
) -> None:
    run = supervise(
        f"""
        [programs.env]
        command = {supervise.child("show_env.py")}
        numprocs = 2
        numprocs_start = 3
        startsecs = 0
        autorestart = "never"
        environment = {{ KEEP_ME = "overridden", DROP_ME = false, BUILT = "${{BASE}}/sub-$BASE", \
DOLLAR = "$$5" }}
        """,
        loop=loop_kind,
        env={"KEEP_ME": "original", "DROP_ME": "present", "BASE": "/base", "INHERITED": "yes"},
    )
    seen = {}
    for num in (3, 4):
        line = run.wait_line(rf"^env:{num} \| (\{{.*\}})$", "stdout")
        seen[num] = json.loads(line[1])
    for num, env in seen.items():
        assert env["KEEP_ME"] == "overridden"
        assert "DROP_ME" not in env
        assert env["BUILT"] == "/base/sub-/base"
        assert env["DOLLAR"] == "$5"
        assert env["INHERITED"] == "yes"
        assert env["ASYNCSUP_PROCESS_NAME"] == f"env:{num}"
        assert env["ASYNCSUP_PROCESS_NUM"] == str(num)
    assert run.stop() == 0


def test_children_see_only_their_stdio_fds(
    supervise: Harness, loop_kind: str
) -> None:
    """PID1.md #22 on both loops: a child sees 0, 1, 2 and nothing of asyncsup's."""
    script = "import os; print('fds', sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    run = supervise(
        f"""
        [programs.fds]
        command = [{supervise.toml_str(supervise.PYTHON)}, "-c", "{script}"]
        startsecs = 0
        autorestart = "never"
        """,
        loop=loop_kind,
    )
    line = run.wait_line(r"^fds \| fds (.*)$", "stdout")
    # listdir itself opens one fd for the directory it reads
    assert json.loads(line[1])[:3] == [0, 1, 2] and len(json.loads(line[1])) == 4
    assert run.stop() == 0
