"""Black-box tests of what asyncsup prints: log lines, children's output, JSON lines, file rotation.

The contract a user sees: state changes on stderr as `web: STARTING -> RUNNING (pid 42)`; children's
stdout on stdout as `web | line` (`web:0 | line` with numprocs > 1); their stderr on stderr the same
way; `--log-format json` turns both into one JSON object per line. Lines are never cut or mixed.
"""

from __future__ import annotations

import json
import re
import select
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Harness

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: .*$")
CHATTY = re.compile(r"^(\w+) \| (\w+)-(\d+)-(x*)-end$")


def chatty_line_ok(match: re.Match[str] | None) -> bool:
    """A relayed chatty.py line is whole: its own name, and as many x as its number says."""
    return (
        match is not None
        and match[1] == match[2]
        and len(match[4]) == int(match[3]) % 211 * 7
    )


def last_chatty_line(name: str, count: int) -> str:
    i = count - 1
    return f"{name}-{i}-{'x' * (i % 211 * 7)}-end"


def printer(harness: Harness, lines: list[str]) -> str:
    """A program (as a TOML list) that prints `lines` to stdout, then `to-console` to stderr, then
    sleeps."""
    code = (
        f"import sys, time; print(*{lines!r}, sep=chr(10), flush=True); "
        "print('to-console', file=sys.stderr, flush=True); time.sleep(60)"
    )
    return "[" + ", ".join(harness.toml_str(arg) for arg in (sys.executable, "-c", code)) + "]"


def wait_file_ends_with(harness: Harness, path: Path, line: str) -> None:
    """The exit line may come before the last output was written (the drain after an exit is
    bounded, 2s, and a loaded machine can exceed it): wait for the output itself."""
    tail = (line + "\n").encode()

    def ends_with_tail() -> bool:
        try:
            return path.read_bytes().endswith(tail)
        except FileNotFoundError:  # not yet created, or renamed by a rotation this instant
            return False

    harness.wait_until(ends_with_tail, f"{path} ends with {line}")


def test_text_format_of_states_and_output(supervise: Harness, loop_kind: str) -> None:
    """1. Every stderr line is a log line or a `name | ...` line of a child's stderr.
    2. numprocs > 1 names processes `web:0`, `web:1`; a single one is just `solo`.
    3. A last line without a newline is still relayed, whole."""
    run = supervise(
        """
        [programs.web]
        command = ["sh", "-c", "echo hello from $ASYNCSUP_PROCESS_NUM; exec sleep 60"]
        numprocs = 2
        startsecs = 0

        [programs.solo]
        command = ["sh", "-c", "echo out; echo err >&2; printf 'no newline at the end'"]
        startsecs = 0
        autorestart = "never"
        """,
        loop=loop_kind,
    )
    pid = run.wait_line(r"INFO asyncsup\.supervisor: web:1: STARTING -> RUNNING \(pid (\d+)\)$", "stderr")[1]
    assert int(pid) > 0
    run.wait_line(r"^web:0 \| hello from 0$", "stdout")
    run.wait_line(r"^web:1 \| hello from 1$", "stdout")
    run.wait_line(r"^solo \| out$", "stdout")
    run.wait_line(r"^solo \| err$", "stderr")
    run.wait_line(r"^solo \| no newline at the end$", "stdout")
    run.wait_line(r"solo: RUNNING -> EXITED \(exit 0\)$", "stderr")
    assert run.stop() == 0
    for line in run.texts("stderr"):
        assert LOG_LINE.match(line) or line == "solo | err", line
    assert sorted(run.texts("stdout")) == [
        "solo | no newline at the end", "solo | out", "web:0 | hello from 0", "web:1 | hello from 1",
    ]  # fmt: skip


def test_json_format_for_logs_and_output(supervise: Harness, loop_kind: str) -> None:
    run = supervise(
        """
        [programs.web]
        command = ["sh", "-c", "echo 'hello \\"json\\"'; echo oops >&2; exec sleep 60"]
        startsecs = 0
        """,
        "--log-format", "json",
        loop=loop_kind,
    )  # fmt: skip
    run.wait_line(r'"msg": "web: STARTING -> RUNNING \(pid \d+\)"', "stderr")
    run.wait_line(r'"line": "hello \\"json\\""', "stdout")
    run.wait_line(r'"line": "oops"', "stderr")
    assert run.stop() == 0
    records = [json.loads(line) for line in run.texts("stderr")]  # every line is JSON
    states = [r for r in records if r.get("msg", "").startswith("web: ")]
    assert [r["msg"].split(" (")[0] for r in states] == [
        "web: STOPPED -> STARTING", "web: STARTING -> RUNNING",
        "web: RUNNING -> STOPPING", "web: STOPPING -> STOPPED",
    ]  # fmt: skip
    assert all(r["level"] == "info" and isinstance(r["ts"], float) for r in states)
    [err] = [r for r in records if "line" in r]
    assert err["process"] == "web" and err["stream"] == "stderr" and err["line"] == "oops"
    [out] = [json.loads(line) for line in run.texts("stdout")]
    assert out["process"] == "web" and out["stream"] == "stdout" and out["line"] == 'hello "json"'
    assert isinstance(out["ts"], float)


@pytest.mark.parametrize("labelled", [True, False], ids=["prefixed", "as-written"])
def test_two_chatty_programs_never_interleave_mid_line(
    supervise: Harness, loop_kind: str, labelled: bool
) -> None:
    """chatty.py cuts its lines at odd places across writes (1..4093 bytes); asyncsup must relay
    every line whole, in order, with its own prefix (or, with `prefix = false`, exactly as written),
    while the other program writes too."""
    count = 4000
    output = "" if labelled else "stdout = { console = true, prefix = false }"
    run = supervise(
        f"""
        [programs.alpha]
        command = {supervise.child("chatty.py", "alpha", count)}
        startsecs = 0
        autorestart = "never"
        {output}

        [programs.beta]
        command = {supervise.child("chatty.py", "beta", count)}
        startsecs = 0
        autorestart = "never"
        {output}
        """,
        loop=loop_kind,
    )
    for name in ("alpha", "beta"):
        label = rf"{name} \| " if labelled else ""
        run.wait_line(rf"^{label}{last_chatty_line(name, count)}$", "stdout")
    assert run.stop() == 0
    numbers: dict[str, list[int]] = {"alpha": [], "beta": []}
    for line in run.texts("stdout"):
        # As written, a line starts with its program's name: what a prefix would have said.
        match = CHATTY.match(line if labelled else f"{line.split('-')[0]} | {line}")
        assert chatty_line_ok(match), f"cut, mixed or wrongly labelled line: {line[:200]!r}"
        assert match is not None
        numbers[match[1]].append(int(match[3]))
    for name, got in numbers.items():
        missing = sorted(set(range(count)) - set(got))
        assert got == list(range(count)), f"{name}: {len(got)} lines, missing {missing[:20]}"


def test_100mb_of_output_keeps_asyncsup_memory_bounded(supervise: Harness, loop_kind: str) -> None:
    """A child writes 100 MB as fast as it can; asyncsup's stdout is /dev/null. The child finishes
    (nothing blocks for good) and asyncsup's peak RSS stays far below the volume relayed."""
    run = supervise(
        f"""
        [programs.spew]
        command = {supervise.child("spew.py", 100)}
        startsecs = 0
        autorestart = "never"
        """,
        loop=loop_kind,
        capture_stdout=False,
    )
    run.wait_line(r"^spew \| spew done$", "stderr", timeout=60)
    run.wait_line(r"spew: RUNNING -> EXITED \(exit 0\)", "stderr", timeout=60)
    peak = supervise.kib(supervise.proc_status(run.pid)["VmHWM"])
    assert run.stop() == 0
    assert peak < 100 * 1024, f"asyncsup peak RSS {peak} KiB while relaying 100 MB"


def test_a_stalled_stdout_blocks_the_child_not_our_memory(supervise: Harness, loop_kind: str) -> None:
    """1. Nobody reads asyncsup's stdout (a stuck `docker logs` pipe); a child writes 100 MB.
    2. The child ends up blocked in its own write, having written only what the pipes and the
       sink buffer hold; asyncsup's RSS stays bounded.
    3. Once stdout is read again everything arrives: every line, whole, exactly once."""
    megabytes = 100
    run = supervise(
        f"""
        [programs.spew]
        command = {supervise.child("spew.py", megabytes)}
        startsecs = 0
        autorestart = "never"
        """,
        loop=loop_kind,
        read_stdout=False,
    )
    pid = int(run.wait_line(r"spew: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    blocked: list[bool] = []

    def stays_blocked() -> bool:  # 3 looks 10 ms apart: not a passing wait for a slow reader
        blocked.append("pipe_write" in Path(f"/proc/{pid}/wchan").read_text())
        return blocked[-3:] == [True] * 3

    supervise.wait_until(stays_blocked, "the child stays blocked writing")
    written = int(Path(f"/proc/{pid}/io").read_text().split("wchar: ")[1].split()[0])
    rss = supervise.kib(supervise.proc_status(run.pid)["VmRSS"])
    assert written < 16_000_000, f"the child wrote {written} bytes while our stdout was stalled"
    assert rss < 100 * 1024, f"asyncsup RSS {rss} KiB while its stdout is stalled"
    assert run.proc.stdout is not None
    lines = megabytes * 10_000
    expected = lines * len(b"spew | " + b"s" * 99 + b"\n")
    received, newlines = 0, 0
    # bounded: a lost line would otherwise leave us blocked on a pipe that stays open
    while received < expected and select.select([run.proc.stdout], [], [], 20)[0]:
        chunk = run.proc.stdout.read1(1 << 20)
        received += len(chunk)
        newlines += chunk.count(b"\n")
    assert (newlines, received) == (lines, expected)
    run.wait_line(r"spew: RUNNING -> EXITED \(exit 0\)", "stderr")
    assert run.stop() == 0


def test_file_output_rotates_on_line_boundaries(supervise: Harness, loop_kind: str, tmp_path: Path) -> None:
    """1. stdout goes to logs/chatty.log with max_bytes = 64 KiB and backups = 3.
    2. ~2.9 MB go through: many rotations.
    3. At most 3 old files; every file holds whole lines only, as the program wrote them (no
       prefix); together they are the newest lines, consecutive, in order, ending with the last one."""
    count = 4000
    run = supervise(
        f"""
        [programs.chatty]
        command = {supervise.child("chatty.py", "chatty", count)}
        startsecs = 0
        autorestart = "never"
        stdout = {{ file = "logs/chatty.log", max_bytes = "64KiB", backups = 3 }}
        """,
        loop=loop_kind,
    )
    wait_file_ends_with(supervise, tmp_path / "logs" / "chatty.log", last_chatty_line("chatty", count))
    assert run.stop() == 0
    logs = tmp_path / "logs"
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    numbers = []
    for name in ("chatty.log.3", "chatty.log.2", "chatty.log.1", "chatty.log"):
        data = (logs / name).read_bytes()
        assert data.endswith(b"\n"), f"{name} ends mid-line"
        for line in data.decode().splitlines():
            match = CHATTY.match(f"chatty | {line}")
            assert chatty_line_ok(match), f"{name}: cut line {line[:120]!r}"
            assert match is not None
            numbers.append(int(match[3]))
    assert numbers == list(range(numbers[0], count))
    assert not run.matching(r"^chatty \|", "stdout")  # to the file only


def test_a_file_gets_the_lines_as_written_even_in_json_log_mode(supervise: Harness, tmp_path: Path) -> None:
    """A program's file holds its own lines untouched (its JSON logs stay JSON, as with supervisord),
    while the console lines of the same run are JSON records of asyncsup's log format."""
    lines = ['{"level": "info", "msg": "up"}', "plain text", "x" * 5000]
    run = supervise(
        f"""
        [programs.app]
        command = {printer(supervise, lines)}
        startsecs = 0
        stdout = {{ file = "logs/app.log" }}
        """,
        "--log-format", "json",
    )  # fmt: skip
    run.wait_line(r'"line": "to-console"', "stderr")
    log = tmp_path / "logs" / "app.log"
    wait_file_ends_with(supervise, log, lines[-1])
    assert run.stop() == 0
    assert log.read_text().splitlines() == lines
    assert json.loads(log.read_text().splitlines()[0]) == {"level": "info", "msg": "up"}


def test_unprefixed_console_keeps_a_programs_json_lines_in_json_log_mode(supervise: Harness) -> None:
    """With --log-format json and prefix = false, the program's own JSON log lines reach our stdout
    untouched (what a log collector parses), not wrapped in our records; its stderr, left
    prefixed, is wrapped as usual."""
    lines = ['{"level": "info", "msg": "up"}', '{"level": "warning", "msg": "disk at 91%"}']
    run = supervise(
        f"""
        [programs.app]
        command = {printer(supervise, lines)}
        startsecs = 0
        stdout = {{ console = true, prefix = false }}
        """,
        "--log-format", "json",
    )  # fmt: skip
    run.wait_line(r'"line": "to-console"', "stderr")
    run.wait_line(re.escape(lines[-1]), "stdout")
    assert run.stop() == 0
    assert run.texts("stdout") == lines


def test_file_output_size_stays_near_max_bytes(supervise: Harness, tmp_path: Path) -> None:
    """Rotated files hold about max_bytes: no more than one line (here < 1.5 KiB) over it."""
    run = supervise(
        f"""
        [programs.chatty]
        command = {supervise.child("chatty.py", "chatty", 4000)}
        startsecs = 0
        autorestart = "never"
        stdout = {{ file = "logs/chatty.log", max_bytes = "64KiB", backups = 3 }}
        """
    )
    wait_file_ends_with(supervise, tmp_path / "logs" / "chatty.log", last_chatty_line("chatty", 4000))
    assert run.stop() == 0
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "logs").iterdir()}
    assert all(size <= 64 * 1024 + 1500 for size in sizes.values()), sizes


def test_last_lines_of_a_critical_program_are_relayed_before_exit(supervise: Harness, loop_kind: str) -> None:
    """1. A critical program writes ~3 MB in one write (its "traceback") and exits 3 at once,
       leaving its pipe full.
    2. asyncsup shuts down because of it, and exits 3.
    3. Every line the program wrote was relayed first: nothing is lost in the pipe at shutdown."""
    count = 4000
    chatty = " ".join(supervise.child("chatty.py", "last", count, "bulk")[1:-1].split(", "))
    run = supervise(
        f"""
        [programs.last]
        command = ["sh", "-c", {supervise.toml_str(chatty + "; exit 3")}]
        startsecs = 0
        autorestart = "never"
        critical = true
        """,
        loop=loop_kind,
    )
    assert run.wait_exit() == 3
    got = [CHATTY.match(line) for line in run.texts("stdout")]
    assert all(chatty_line_ok(m) for m in got)
    assert [int(m[3]) for m in got if m] == list(range(count))


def test_stream_routing_redirect_off_and_a_shared_file(supervise: Harness, tmp_path: Path) -> None:
    """redirect_stderr sends stderr to the stdout stream; "off" drops a stream; two programs
    naming one file share it, each line whole and, with prefix = true, prefixed with its process."""
    both = "echo {0}-out; echo {0}-err >&2; exec sleep 60"
    run = supervise(
        f"""
        [programs.merged]
        command = ["sh", "-c", "{both.format("merged")}"]
        redirect_stderr = true
        startsecs = 0

        [programs.quiet]
        command = ["sh", "-c", "{both.format("quiet")}"]
        stdout = "off"
        startsecs = 0

        [programs.one]
        command = {supervise.child("chatty.py", "one", 1000)}
        stdout = {{ file = "shared.log", max_bytes = 0, prefix = true }}
        startsecs = 0
        autorestart = "never"

        [programs.two]
        command = {supervise.child("chatty.py", "two", 1000)}
        stdout = {{ file = "shared.log", max_bytes = 0, prefix = true }}
        startsecs = 0
        autorestart = "never"
        """
    )
    run.wait_line(r"^merged \| merged-out$", "stdout")
    run.wait_line(r"^merged \| merged-err$", "stdout")
    run.wait_line(r"^quiet \| quiet-err$", "stderr")
    shared = tmp_path / "shared.log"
    ends = [f"{name} | {last_chatty_line(name, 1000)}\n".encode() for name in ("one", "two")]
    supervise.wait_until(
        lambda: shared.exists() and all(end in shared.read_bytes() for end in ends), "both in shared.log"
    )
    assert run.stop() == 0
    assert not run.matching(r"merged-err", "stderr")
    assert not run.matching(r"quiet-out")
    numbers: dict[str, list[int]] = {"one": [], "two": []}
    for line in shared.read_text().splitlines():
        match = CHATTY.match(line)
        assert chatty_line_ok(match), f"cut or mixed line: {line[:120]!r}"
        assert match is not None
        numbers[match[1]].append(int(match[3]))
    assert numbers == {"one": list(range(1000)), "two": list(range(1000))}


def test_log_lines_never_land_inside_a_childs_stderr_line(supervise: Harness, loop_kind: str) -> None:
    """supervisord's stdout mode interleaves its log lines with children's bytes. Here a chatty
    child writes to stderr while a flapping program makes asyncsup log state changes on the same
    stream: every stderr line is either a whole log line or a whole child line."""
    chatty = " ".join(supervise.child("chatty.py", "noisy", 4000)[1:-1].split(", "))
    run = supervise(
        f"""
        [programs.noisy]
        command = ["sh", "-c", {supervise.toml_str(chatty + " 1>&2")}]
        startsecs = 0
        autorestart = "never"

        [programs.flappy]
        command = ["true"]
        startsecs = 0
        flap_limit = 1000
        """,
        loop=loop_kind,
    )
    run.wait_line(rf"^noisy \| {last_chatty_line('noisy', 4000)}$", "stderr")
    assert run.stop() == 0
    noisy = 0
    for line in run.texts("stderr"):
        if line.startswith("noisy | "):
            assert chatty_line_ok(CHATTY.match(line)), f"cut or mixed line: {line[:120]!r}"
            noisy += 1
        else:
            assert LOG_LINE.match(line), f"not a whole log line: {line[:120]!r}"
    assert noisy == 4000
    assert len(run.matching(r"flappy: \w+ -> STARTING", "stderr")) > 3  # logs were interleaved
