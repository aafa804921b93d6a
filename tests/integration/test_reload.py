"""Reload as an operator does it: edit the config, `asyncsup ctl reread` / `update`, or SIGHUP.

Everything is observed from outside: ctl's output and exit code, `ctl status --json` (pids tell a
restarted process from an untouched one) and asyncsup's log lines. Nothing is timed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Asyncsup, Harness

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
SUP = r"INFO asyncsup\.supervisor: "
SLEEPER = '["sleep", "{seconds}"]'


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "asyncsup", "ctl", "-c", str(config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 3, env=env, cwd="/")


def status(config: Path) -> dict[str, dict[str, Any]]:
    """Through the socket itself: the config file may be broken on purpose."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    socket = str(config.with_suffix(".sock"))
    argv = [sys.executable, "-m", "asyncsup", "ctl", "--socket", socket, "--json", "status"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, env=env, cwd="/")
    return {p["name"]: p for p in json.loads(result.stdout)["processes"]}


def program(name: str, seconds: int, **keys: object) -> str:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    return f"[programs.{name}]\ncommand = {SLEEPER.format(seconds=seconds)}\nstartsecs = 0\n{extra}"


def start(supervise: Harness, config: str, *running: str) -> tuple[Asyncsup, Path]:
    run = supervise(config)
    run.wait_line(r"control socket: ", "stderr")
    for name in running:
        run.wait_line(rf"{SUP}{re.escape(name)}: STARTING -> RUNNING", "stderr")
    return run, supervise.tmp_path / "asyncsup.toml"


def stopping_overlaps(run: Asyncsup, program_name: str) -> int:
    """The most copies of a program that were STOPPING at the same time, from the log's order."""
    stopping: set[str] = set()
    most = 0
    pattern = rf"{SUP}({re.escape(program_name)}:\d+): (\w+) -> (\w+)"
    for match in run.matching(pattern, "stderr"):
        name, old, new = match.groups()
        if new == "STOPPING":
            stopping.add(name)
        elif old == "STOPPING":
            stopping.discard(name)
        most = max(most, len(stopping))
    return most


def test_update_starts_added_stops_removed_and_rolls_changed(supervise: Harness) -> None:
    """1. keep (unchanged), old (removed), pool (3 copies, command changed), idle (stopped by the
    operator, command changed). 2. reread shows the diff and changes nothing. 3. update: old stops,
    new starts, keep keeps its pid, idle stays STOPPED, pool restarts one copy at a time: each new
    copy RUNNING before the next one stops, never two STOPPING at once."""
    before = program("keep", 1000) + program("old", 1001) + program("pool", 1002, numprocs=3)
    before += program("idle", 1003)
    run, config = start(supervise, before, "keep", "old", "pool:0", "pool:1", "pool:2", "idle")
    assert ctl(config, "stop", "idle").returncode == 0
    pids = {name: p["pid"] for name, p in status(config).items()}

    after = program("keep", 1000) + program("new", 1004) + program("pool", 1005, numprocs=3)
    after += program("idle", 1006)
    config.write_text(after)
    reread = ctl(config, "reread")
    assert reread.returncode == 0, reread
    assert reread.stdout.splitlines() == [
        "program new: added",
        "program old: removed",
        "program pool: changed (command)",
        "program idle: changed (command)",
    ]
    assert status(config)["old"]["pid"] == pids["old"]  # reread changed nothing

    update = ctl(config, "update")
    assert update.returncode == 0, update
    assert update.stdout.splitlines() == [
        "program old: removed: stopped",
        "program pool: changed (command): pool:0 restarted; pool:1 restarted; pool:2 restarted",
        "program idle: changed (command): idle updated (left stopped)",
        "program new: added: started",
    ]
    run.wait_line(rf"{SUP}new: STARTING -> RUNNING", "stderr")
    now = status(config)
    assert "old" not in now and now["new"]["state"] == "RUNNING"
    assert now["keep"]["pid"] == pids["keep"]
    assert now["idle"]["state"] == "STOPPED"
    for n in range(3):
        assert now[f"pool:{n}"]["state"] == "RUNNING" and now[f"pool:{n}"]["pid"] != pids[f"pool:{n}"]
    assert stopping_overlaps(run, "pool") == 1
    steps = r"pool:\d: (RUNNING -> STOPPING|STARTING -> RUNNING)"
    order = [m.group(0) for m in run.matching(steps, "stderr")]
    assert order[3:] == [  # the first three are the initial starts
        f"pool:{n}: {step}" for n in range(3) for step in ("RUNNING -> STOPPING", "STARTING -> RUNNING")
    ]
    for change in ("program old: removed", "program pool: changed (command)", "program new: added"):
        run.wait_line(rf"INFO asyncsup\.reload: reload: {re.escape(change)}", "stderr")
    assert run.stop() == 0


def test_a_broken_config_is_refused_and_nothing_changes(supervise: Harness) -> None:
    run, config = start(supervise, program("web", 1000), "web")
    pid = status(config)["web"]["pid"]
    config.write_text(program("web", 1001) + "[programs.web2]\ncommand = []\n")
    refused = ctl(config, "update")
    assert refused.returncode == 1
    assert "the config has an error, nothing changed" in refused.stderr
    assert "programs.web2.command" in refused.stderr
    config.write_text(program("web", 1001) + "oops\n")  # not even TOML: ctl finds the socket anyway
    broken = ctl(config, "reread")
    assert broken.returncode == 1 and "invalid TOML" in broken.stderr
    run.wait_line(r"ERROR asyncsup\.reload: reload refused, nothing changed: .*invalid TOML", "stderr")
    assert status(config)["web"]["pid"] == pid
    run.signal(signal.SIGHUP)  # logged, nothing changes either
    run.wait_line(r"reload refused, nothing changed", "stderr", count=3)
    assert status(config)["web"]["pid"] == pid
    assert run.stop() == 0


def test_sighup_updates_and_numprocs_only_adds_or_removes_copies(supervise: Harness) -> None:
    """SIGHUP = ctl update. numprocs 2 -> 3 adds web:2 and leaves web:0, web:1 running; 3 -> 1
    removes web:1 and web:2; a "needs a restart" setting is reported and left as it is."""
    named = {"process_name": "{program}:{num}"}  # else numprocs = 1 would rename web:0 to web
    run, config = start(supervise, program("web", 1000, numprocs=2, **named), "web:0", "web:1")
    pids = {name: p["pid"] for name, p in status(config).items()}
    config.write_text(program("web", 1000, numprocs=3, **named))
    run.signal(signal.SIGHUP)
    run.wait_line(r"SIGHUP received: relayed to 0 program\(s\); reloading the config", "stderr")
    run.wait_line(rf"{SUP}web:2: STARTING -> RUNNING", "stderr")
    now = status(config)
    assert [now[f"web:{n}"]["pid"] for n in range(2)] == [pids["web:0"], pids["web:1"]]

    config.write_text('[http]\nlisten = "127.0.0.1:0"\n' + program("web", 1000, numprocs=1, **named))
    update = ctl(config, "update")
    assert update.returncode == 0, update
    assert update.stdout.splitlines() == [
        "program web: changed (numprocs): web:1 removed; web:2 removed",
        "setting http.listen: needs a restart: kept its running value",
    ]
    now = status(config)
    assert list(now) == ["web:0"] and now["web:0"]["pid"] == pids["web:0"]
    assert run.stop() == 0


def test_sigusr1_reopens_log_files_after_a_rename(supervise: Harness, tmp_path: Path) -> None:
    """logrotate's way: 1. rename web.log to web.log.1; the next line still goes to the renamed file
    (asyncsup holds it open). 2. SIGUSR1 to asyncsup. 3. The next line goes to a new web.log."""
    log_file = tmp_path / "web.log"
    script = "trap 'echo line $n; n=$((n+1))' USR1; n=1; echo up; while :; do sleep 1000 & wait $!; done"
    config = (
        f"[programs.web]\ncommand = {json.dumps(['sh', '-c', script])}\nstartsecs = 0\n"
        f"stdout = {{ file = {json.dumps(str(log_file))} }}\n"
    )
    run, config_path = start(supervise, config, "web")

    def has(path: Path, text: str) -> bool:
        return path.exists() and text in path.read_text()

    supervise.wait_until(lambda: has(log_file, "up\n"), "web.log gets the first line")
    log_file.rename(tmp_path / "web.log.1")
    assert ctl(config_path, "signal", "USR1", "web").returncode == 0
    rotated = tmp_path / "web.log.1"
    supervise.wait_until(lambda: has(rotated, "line 1\n"), "the renamed file gets line 1")
    assert not log_file.exists()

    run.signal(signal.SIGUSR1)
    run.wait_line(r"SIGUSR1 received: relayed to 0 program\(s\); reopening log files", "stderr")
    run.wait_line(r"INFO asyncsup\.reload: reopening 1 log file\(s\)", "stderr")
    assert ctl(config_path, "signal", "USR1", "web").returncode == 0
    supervise.wait_until(lambda: has(log_file, "line 2\n"), "a fresh web.log gets line 2")
    assert log_file.read_text() == "line 2\n"
    assert rotated.read_text() == "up\nline 1\n"
    assert run.stop() == 0
