"""The PID 1 shim on its own: a tiny Python "supervisor" (this file, run as a script) calls
become_init_child() as PID 1 of a fresh PID namespace, and the tests watch both processes.

Needs root and unshare (skipped otherwise, failing instead with CI=true), like the PID-1 suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from pid1 import (
    Namespace,
    children_of,
    proc_state,
    require_pid1_support,
    wait_until,
)

from asyncsup.shim import FORWARDED_SIGNALS, describe_status, exit_code

ROOT = Path(__file__).resolve().parents[2]


def shimmed(scenario: str, *args: str) -> Namespace:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return Namespace([sys.executable, __file__, scenario, *args], env=env)


@pytest.fixture
def pid1() -> None:
    require_pid1_support()


# -- without a namespace ---------------------------------------------------------------------------


def wait_status(argv: list[str], sig: int | None = None) -> int:
    proc = subprocess.Popen(argv)
    if sig is not None:
        proc.send_signal(sig)
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = 0  # we took the status ourselves
    return status


def test_wait_statuses_read_like_a_shell() -> None:
    status = wait_status(["sh", "-c", "exit 7"])
    assert (exit_code(status), describe_status(status)) == (7, "exit 7")
    status = wait_status(["sleep", "60"], signal.SIGKILL)
    assert (exit_code(status), describe_status(status)) == (137, "killed by SIGKILL")


def test_forwarded_signals_exclude_job_control_faults_and_sigchld() -> None:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGWINCH):
        assert sig in FORWARDED_SIGNALS
    for sig in (signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGSEGV):
        assert sig not in FORWARDED_SIGNALS
    assert signal.SIGKILL not in FORWARDED_SIGNALS


def test_subreaper_flag_is_set_and_read_back() -> None:
    code = (
        "from asyncsup.shim import is_subreaper, set_subreaper\n"
        "print(is_subreaper(), set_subreaper(), is_subreaper())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


# -- as PID 1 ---------------------------------------------------------------------------------------


@pytest.mark.pid1
@pytest.mark.parametrize(("code", "expected"), [("0", 0), ("3", 3), ("255", 255)])
def test_pid1_exits_with_the_supervisors_code(pid1: None, code: str, expected: int) -> None:
    with shimmed("exit", code) as ns:
        line = ns.wait_line(r"^supervisor ", stream="stdout")[0]
        assert ns.wait() == expected
    assert line == "supervisor pid 2 pgrp 2 sigblk 0000000000000000"


@pytest.mark.pid1
def test_pid1_exits_128_plus_n_when_the_supervisor_dies_of_a_signal(pid1: None) -> None:
    with shimmed("killself", "TERM") as ns:
        assert ns.wait() == 143
    with shimmed("pause") as ns:
        ns.wait_line(r"^ready", stream="stdout")
        supervisor = children_of(ns.init)[0]
        os.kill(supervisor, signal.SIGKILL)
        assert ns.wait() == 137


@pytest.mark.pid1
def test_signals_are_forwarded_once_and_job_control_and_faults_are_not(pid1: None) -> None:
    """Sent from the host one after another; SIGPWR last, as a marker: the shim takes pending
    signals lowest number first, so everything before it has been handled when it arrives."""
    sent = [
        signal.SIGHUP, signal.SIGUSR1, signal.SIGSEGV, signal.SIGTSTP, signal.SIGTTIN,
        signal.SIGTTOU, signal.SIGWINCH, signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR,
    ]  # fmt: skip
    with shimmed("record") as ns:
        ns.wait_line(r"^ready", stream="stdout")
        for sig in sent:
            ns.kill(sig)
        ns.wait_line(r"^got SIGPWR$", stream="stdout")
        assert proc_state(ns.init) in ("S", "R")  # not T: job control signals did not stop it
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0
    got = sorted(line.split()[1] for line in ns.lines("stdout") if line.startswith("got "))
    forwarded = [s.name for s in sent if s in FORWARDED_SIGNALS] + ["SIGTERM"]
    assert got == sorted(forwarded)
    assert "SIGTSTP" not in got and "SIGSEGV" not in got


@pytest.mark.pid1
def test_supervisor_without_handlers_survives_forwarded_signals(pid1: None) -> None:
    """Pid 2 has no PID-1 protection; the shim's stand-in handlers keep USR1 & co. from killing
    it until the supervisor installs its own. TERM (handled by the script) ends it with 0."""
    with shimmed("pause") as ns:
        ns.wait_line(r"^ready", stream="stdout")
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGALRM, signal.SIGUSR2):
            ns.kill(sig)
        ns.kill(signal.SIGTERM)  # taken after the lower-numbered ones above
        assert ns.wait() == 0


@pytest.mark.pid1
def test_a_sigterm_before_the_supervisor_has_handlers_still_stops_it(pid1: None) -> None:
    """`docker stop` right after start, before the event loop is up: exit 143, not ignored."""
    with shimmed("bare") as ns:
        ns.wait_line(r"^ready", stream="stdout")
        ns.kill(signal.SIGUSR1)  # stands in harmlessly...
        ns.kill(signal.SIGTERM)  # ...while TERM keeps its default: it stops the supervisor
        assert ns.wait() == 143


@pytest.mark.pid1
@pytest.mark.parametrize("json_logs", [False, True])
def test_orphans_are_reaped_and_logged_by_the_shim(pid1: None, json_logs: bool) -> None:
    with shimmed("orphan", "json" if json_logs else "text") as ns:
        line = ns.wait_line(r"reaped orphan pid \d+")[0]
        assert ns.zombies() == []
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0
    if json_logs:
        record = json.loads(line)
        assert (record["level"], record["logger"]) == ("info", "asyncsup.reaper")
        assert re.fullmatch(r"reaped orphan pid \d+ \(exit 7\)", record["msg"])
    else:
        assert re.search(r" INFO asyncsup\.reaper: reaped orphan pid \d+ \(exit 7\)$", line)


@pytest.mark.pid1
def test_quiet_shim_logs_nothing_below_its_level(pid1: None) -> None:
    with shimmed("orphan", "quiet") as ns:
        ns.wait_line(r"^orphan made", stream="stdout")
        wait_until(lambda: ns.zombies() == [] and len(ns.pids()) == 2, 10, "the orphan reaped")
        ns.kill(signal.SIGTERM)
        assert ns.wait() == 0
    assert ns.lines("stderr") == []


@pytest.mark.pid1
def test_children_of_the_supervisor_inherit_no_blocked_or_ignored_signal(pid1: None) -> None:
    """PID1 case 28 at the shim level: the shim blocks everything; a grandchild sees nothing."""
    with shimmed("spawn-status") as ns:
        assert ns.wait() == 0
    lines = ns.lines("stdout")
    assert "SigBlk:\t0000000000000000" in lines
    assert "SigIgn:\t0000000000000000" in lines


@pytest.mark.pid1
def test_one_ctrl_c_on_a_tty_reaches_the_supervisor_once(pid1: None) -> None:
    """PID1 case 25 at the shim level: the supervisor takes the terminal's foreground group, so
    the tty's SIGINT goes to it alone and the shim has nothing to forward twice."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with Namespace([sys.executable, __file__, "record"], env=env, tty=True) as ns:
        ns.wait_line(r"^ready", stream="stdout")
        fg = ns.wait_line(r"^fg \d+ pgrp \d+", stream="stdout")[0].split()
        assert fg[1] == fg[3], "the supervisor is not the terminal's foreground group"
        ns.write_tty(b"\x03")
        ns.wait_line(r"^got SIGINT", stream="stdout")
        ns.kill(signal.SIGTERM)  # taken after any SIGINT the shim might have had to forward
        assert ns.wait() == 0
    assert ns.stdout.matching(r"^got SIG") == ["got SIGINT", "got SIGTERM"]


# -- the scenarios, run as PID 1 -------------------------------------------------------------------


def _record(signum: int, frame: object) -> None:
    os.write(1, f"got {signal.Signals(signum).name}\n".encode())  # one write: lines never glue
    if signum == signal.SIGTERM:
        sys.exit(0)


def _status_line(key: str) -> str:
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith(key + ":"))


def _exit(args: list[str]) -> None:
    sys.exit(int(args[0]))


def _killself(args: list[str]) -> None:
    sig = signal.Signals["SIG" + args[0]]
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


def _record_all(args: list[str]) -> None:
    for sig in signal.Signals:
        if sig < 32 and sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            signal.signal(sig, _record)
    if os.isatty(0):
        print(f"fg {os.tcgetpgrp(0)} pgrp {os.getpgrp()}", flush=True)


def _record_term(args: list[str]) -> None:
    signal.signal(signal.SIGTERM, _record)


def _make_orphan(args: list[str]) -> None:
    signal.signal(signal.SIGTERM, _record)
    subprocess.run(["sh", "-c", "(sleep .2; exit 7) &"], check=True)
    print("orphan made", flush=True)


def _spawn_status(args: list[str]) -> None:
    subprocess.run(["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"], check=True)
    sys.exit(0)


SCENARIOS = {
    "exit": _exit,
    "killself": _killself,
    "record": _record_all,
    "bare": lambda args: None,  # no handler of its own at all
    "pause": _record_term,
    "orphan": _make_orphan,
    "spawn-status": _spawn_status,
}


def _main(scenario: str, args: list[str]) -> None:
    import logging

    from asyncsup.shim import become_init_child

    logs = args[0] if scenario == "orphan" else "text"
    level = logging.WARNING if logs == "quiet" else logging.INFO
    become_init_child(log_level=level, json_logs=logs == "json")
    me = os.getpid()
    print(f"supervisor pid {me} pgrp {os.getpgrp()} sigblk {_status_line('SigBlk')}", flush=True)
    SCENARIOS[scenario](args)
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2:])
