"""Black-box tests of the control plane: `asyncsup ctl` against a running `python -m asyncsup run`.

Every command is run as a user would run it (a separate `python -m asyncsup ctl` process) and checked
by its output and exit code. Where waiting matters (start waits for RUNNING, /readyz turns 503 while
the drain is still going), the program is held in place by a FIFO the test writes to, so the test
observes the in-between state for sure instead of hoping to catch it. Nothing is timed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asyncsup._version import __version__

if TYPE_CHECKING:
    from conftest import Asyncsup, Harness

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WAIT = 20.0
SUP = r"INFO asyncsup\.supervisor: "
NOBODY = 65534

# A program that prints, answers USR1, and stops on TERM at once. `sleep & wait` keeps sh responsive.
TALKER = (
    "trap 'echo {name} got USR1; echo {name} complains >&2' USR1; trap 'exit 0' TERM; "
    "echo {name} line 1; echo {name} line 2; echo {name} up; "
    "while :; do sleep 1000 & wait $!; done"
)


def sh(script: str) -> str:
    return json.dumps(["sh", "-c", script])


def ctl(config: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = WAIT,
        user: int | None = None) -> subprocess.CompletedProcess[str]:
    """`asyncsup ctl -c CONFIG ARGS...` as its own process (as `user` through setpriv)."""
    argv = [PYTHON, "-m", "asyncsup", "ctl", *(["-c", str(config)] if config else []), *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ctl_env(env), cwd="/")


def ctl_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ASYNCSUP_CONFIG", None)  # only where a test sets it
    return {**env, **(extra or {})}


def ctl_popen(config: Path, *args: str) -> subprocess.Popen[str]:
    """A ctl that keeps running (start waiting for RUNNING, tail -f)."""
    argv = [PYTHON, "-m", "asyncsup", "ctl", "-c", str(config), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ctl_env())


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def started(supervise: Harness, config: str, *running: str, loop: str = "asyncio") -> tuple[Asyncsup, Path]:
    """asyncsup on `config`, once its socket is up and each of `running` is RUNNING."""
    run = supervise(config, loop=loop)
    run.wait_line(r"control socket: ", "stderr")
    for name in running:
        run.wait_line(rf"{SUP}{re.escape(name)}: STARTING -> RUNNING", "stderr")
    return run, supervise.tmp_path / "asyncsup.toml"


def http_port(run: Asyncsup) -> int:
    return int(run.wait_line(r"http: serving .* on http://127\.0\.0\.1:(\d+)", "stderr")[1])


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def release(fifo: Path) -> None:
    """Let a program blocked on `read x < fifo` go on (opening blocks until it reads)."""
    with open(fifo, "w") as pipe:
        pipe.write("go\n")


class Reader:
    """The stdout lines of a long-running ctl (tail -f), waited for with a bound, never slept on."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: text in self.lines, WAIT):
                raise AssertionError(f"{text!r} not printed within {WAIT}s; got {self.lines}")

    def finish(self) -> int:
        _, err = self.proc.communicate(timeout=WAIT)  # also closes the pipes
        self._thread.join(WAIT)
        assert err == "", err
        return self.proc.returncode


# -- status, pid, version -------------------------------------------------------------------------------


def test_status_shows_each_process_its_pid_uptime_and_resources(supervise: Harness, loop_kind: str) -> None:
    """1. Three processes run, one is never started. 2. `status` prints an aligned table and exits 3
    (one process is STOPPED), `status web worker:*` exits 0. 3. --json has the same facts plus RSS
    and CPU from /proc. 4. pid and version answer; an unknown name exits 4 and lists the programs."""
    run, config = started(
        supervise,
        f"""
        [programs.web]
        command = {sh(TALKER.format(name="web"))}
        startsecs = 0
        [programs.worker]
        command = {sh(TALKER.format(name="worker"))}
        numprocs = 2
        startsecs = 0
        [programs.idle]
        command = ["sleep", "1000"]
        autostart = false
        """,
        "web", "worker:0", "worker:1",
        loop=loop_kind,
    )
    everything = ctl(config, "status")
    assert everything.returncode == 3, everything
    table = lines(everything)
    assert table[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT", "RSS", "CPU"]
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert set(rows) == {"web", "worker:0", "worker:1", "idle"}
    assert rows["idle"][1:] == ["STOPPED", "-", "-", "0", "-", "-", "-"]
    assert rows["web"][1] == "RUNNING" and re.fullmatch(r"\d+:\d\d:\d\d", rows["web"][3])
    assert len({row.index(" RUNNING ") for row in table[1:] if " RUNNING " in row}) == 1  # aligned

    running = ctl(config, "--json", "status", "web", "worker:*")
    assert running.returncode == 0, running
    info = {p["name"]: p for p in json.loads(running.stdout)["processes"]}
    assert list(info) == ["web", "worker:0", "worker:1"]
    web_pid = int(run.wait_line(r"web: STARTING -> RUNNING \(pid (\d+)\)", "stderr")[1])
    assert info["web"]["pid"] == web_pid and info["web"]["program"] == "web"
    assert info["web"]["rss"] > 0 and info["web"]["cpu"] >= 0 and info["web"]["uptime"] >= 0
    assert info["worker:1"]["program"] == "worker" and info["worker:1"]["restarts"] == 0
    assert rows["web"][2] == str(web_pid)

    env = {"ASYNCSUP_CONFIG": str(config)}  # the config from the environment, as in a container image
    assert ctl(None, "pid", env=env).stdout.strip() == str(run.pid)
    assert ctl(None, "pid", "web", env=env).stdout.strip() == str(web_pid)
    stopped = ctl(config, "pid", "idle")
    assert (stopped.returncode, stopped.stdout.strip()) == (1, "0")
    assert ctl(config, "version").stdout.strip() == __version__
    assert json.loads(ctl(config, "version", "--json").stdout) == {"version": __version__, "protocol": 1}

    unknown = ctl(config, "status", "web", "nope")
    assert unknown.returncode == 4
    assert "no program named 'nope' (known: idle, web, worker)" in unknown.stderr
    assert run.stop() == 0


# -- start, stop, restart -----------------------------------------------------------------------------


def test_start_and_stop_wait_for_the_outcome_in_dependency_order(supervise: Harness, tmp_path: Path) -> None:
    """1. web says it is up only after the test writes to a FIFO; worker depends on web.
    2. `stop web` -> "web: stopped", exit 0; again -> "web: ERROR (not running)", still exit 0.
    3. `start web` does not answer while web is STARTING; after the FIFO write: "web: started".
    4. `start web` again -> "ERROR (already started)", exit 0.
    5. `stop all` stops the workers before web; `start all` starts no worker before web is RUNNING.
    6. `restart worker:*` prints both steps for each process, in supervisorctl's words."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    run = supervise(
        f"""
        [programs.web]
        command = {sh(f"read x < {fifo}; echo web up; trap 'exit 0' TERM; sleep 1000 & wait $!")}
        ready = {{ line = "web up" }}
        startsecs = 0
        [programs.worker]
        command = {sh(TALKER.format(name="worker"))}
        numprocs = 2
        startsecs = 0
        depends_on = ["web"]
        """
    )
    run.wait_line(rf"{SUP}web: STOPPED -> STARTING", "stderr")
    release(fifo)
    run.wait_line(rf"{SUP}worker:1: STARTING -> RUNNING", "stderr")
    config = tmp_path / "asyncsup.toml"

    stop = ctl(config, "stop", "web")
    assert (stop.returncode, lines(stop)) == (0, ["web: stopped"])
    assert lines(ctl(config, "status", "web"))[1].split()[:2] == ["web", "STOPPED"]
    again = ctl(config, "stop", "web")
    assert (again.returncode, lines(again)) == (0, ["web: ERROR (not running)"])

    starting = ctl_popen(config, "start", "web")
    run.wait_line(rf"{SUP}web: STOPPED -> STARTING", "stderr", count=2)
    assert starting.poll() is None  # web cannot be RUNNING before the FIFO write: ctl is still waiting
    release(fifo)
    out, err = starting.communicate(timeout=WAIT)
    assert (starting.returncode, out, err) == (0, "web: started\n", "")
    assert json.loads(ctl(config, "--json", "status", "web").stdout)["processes"][0]["state"] == "RUNNING"
    already = ctl(config, "start", "web")
    assert (already.returncode, lines(already)) == (0, ["web: ERROR (already started)"])

    stop_all = ctl(config, "stop", "all")
    assert stop_all.returncode == 0
    assert lines(stop_all) == ["web: stopped", "worker:0: stopped", "worker:1: stopped"]
    log = run.texts("stderr")
    stopping = [i for i, text in enumerate(log) if re.search(r"(web|worker:\d): RUNNING -> STOPPING", text)]
    assert [re.search(r"(\S+): RUNNING", log[i])[1] for i in stopping][-1] == "web"  # dependents first

    start_all = ctl_popen(config, "start", "all")
    run.wait_line(rf"{SUP}web: STOPPED -> STARTING", "stderr", count=3)
    assert not run.matching(rf"{SUP}worker:\d: STOPPED -> STARTING", "stderr")[2:]  # none before web is up
    release(fifo)
    out, _ = start_all.communicate(timeout=WAIT)
    assert start_all.returncode == 0
    assert out.splitlines() == ["web: started", "worker:0: started", "worker:1: started"]

    restart = ctl(config, "restart", "worker:*")
    assert (restart.returncode, lines(restart)) == (
        0, ["worker:0: stopped", "worker:1: stopped", "worker:0: started", "worker:1: started"]
    )
    unknown = ctl(config, "stop", "nope")
    assert unknown.returncode == 4 and "no program named 'nope'" in unknown.stderr
    assert run.stop() == 0


def test_a_start_that_fails_says_why_and_exits_1(supervise: Harness) -> None:
    """1. `start crash` (exits 3 at once) -> "ERROR (abnormal termination: exit 3)", exit 1; FATAL.
    2. Starting it again from FATAL really starts it again (fresh retries).
    3. `start missing` (no such file) -> "ERROR (spawn error: could not start: ENOENT)", exit 1."""
    run, config = started(
        supervise,
        """
        [programs.crash]
        command = ["sh", "-c", "echo crashing; exit 3"]
        autostart = false
        startsecs = "0.5s"
        startretries = 0
        [programs.missing]
        command = ["/nonexistent/asyncsup-test-binary"]
        autostart = false
        startretries = 0
        """,
    )
    for attempt in (1, 2):
        crash = ctl(config, "start", "crash")
        assert (crash.returncode, lines(crash)) == (1, ["crash: ERROR (abnormal termination: exit 3)"])
        assert len(run.matching(rf"{SUP}crash: \w+ -> STARTING", "stderr")) == attempt
        assert lines(ctl(config, "status", "crash"))[1].split()[:2] == ["crash", "FATAL"]
    missing = ctl(config, "start", "missing")
    assert missing.returncode == 1
    assert lines(missing) == ["missing: ERROR (spawn error: could not start: ENOENT)"]
    assert run.stop() == 0


# -- signal, tail ---------------------------------------------------------------------------------------


def test_signal_reaches_running_processes_only(supervise: Harness) -> None:
    """`signal USR1 web` -> "web: signalled" and web prints that it got it; by number too;
    a process that is not running -> "ERROR (not running)", exit 1; a bad signal name exits 2."""
    run, config = started(
        supervise,
        f"""
        [programs.web]
        command = {sh(TALKER.format(name="web"))}
        startsecs = 0
        [programs.idle]
        command = ["sleep", "1000"]
        autostart = false
        """,
        "web",
    )
    sent = ctl(config, "signal", "USR1", "web")
    assert (sent.returncode, lines(sent)) == (0, ["web: signalled"])
    run.wait_line(r"^web \| web got USR1$", "stdout")
    assert lines(ctl(config, "signal", str(int(signal.SIGUSR1)), "web:*")) == ["web: signalled"]
    run.wait_line(r"^web \| web got USR1$", "stdout", count=2)
    idle = ctl(config, "signal", "HUP", "all")
    assert (idle.returncode, lines(idle)) == (1, ["idle: ERROR (not running)", "web: signalled"])
    bad = ctl(config, "signal", "NOPE", "web")
    assert bad.returncode == 2 and "bad signal name 'NOPE'" in bad.stderr
    assert run.stop() == 0


def test_tail_shows_recent_lines_and_follows_new_ones(supervise: Harness, loop_kind: str) -> None:
    """1. `tail -n 2 web` prints web's last two stdout lines; `tail web stderr` its stderr.
    2. `tail -f -n 1 web` prints the last line, then what web writes next (after a USR1), and
       keeps following across a restart of web. ^C ends it with exit 0.
    3. A program with two processes must be named by process."""
    run, config = started(
        supervise,
        f"""
        [programs.web]
        command = {sh(TALKER.format(name="web"))}
        startsecs = 0
        [programs.worker]
        command = {sh(TALKER.format(name="worker"))}
        numprocs = 2
        startsecs = 0
        """,
        "web",
        loop=loop_kind,
    )
    run.wait_line(r"^web \| web up$", "stdout")
    assert ctl(config, "tail", "-n", "2", "web").stdout == "web line 2\nweb up\n"
    assert ctl(config, "tail", "web", "stderr").stdout == ""
    assert json.loads(ctl(config, "tail", "--json", "-n", "1", "web").stdout) == {
        "name": "web", "stream": "stdout", "data": "web up\n"
    }

    follow = Reader(ctl_popen(config, "tail", "-f", "-n", "1", "web"))
    follow.wait_for("web up")
    ctl(config, "signal", "USR1", "web")
    follow.wait_for("web got USR1")
    assert lines(ctl(config, "restart", "web")) == ["web: stopped", "web: started"]
    follow.wait_for("web line 1")  # the restarted process, through the same tail
    follow.proc.send_signal(signal.SIGINT)
    assert follow.finish() == 0
    assert "web complains" in lines(ctl(config, "tail", "web", "stderr"))  # then sh: "Terminated"

    several = ctl(config, "tail", "worker")
    assert several.returncode == 2 and "'worker' names 2 processes (worker:0, worker:1)" in several.stderr
    assert ctl(config, "tail", "-n", "1", "worker:1").stdout == "worker up\n"
    assert run.stop() == 0


# -- shutdown -------------------------------------------------------------------------------------------


def test_shutdown_drains_and_removes_the_socket(supervise: Harness) -> None:
    run, config = started(supervise, f"[programs.web]\ncommand = {sh(TALKER.format(name='web'))}\n", "web")
    socket_path = config.with_suffix(".sock")
    assert socket_path.exists()
    done = ctl(config, "shutdown")
    assert (done.returncode, done.stdout) == (0, "Shut down\n")
    assert run.wait_exit() == 0
    run.wait_line(r"asyncsup stopped \(asyncsup ctl shutdown\), exit code 0", "stderr")
    assert not socket_path.exists()
    gone = ctl(config, "status")
    assert gone.returncode == 4 and "no such socket" in gone.stderr


# -- the socket: permissions, stale and live sockets, the protocol ------------------------------------


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """A folder anyone may enter, so that only the socket's own mode can stop another user."""
    folder = Path(tempfile.mkdtemp(prefix="asyncsup-ctl-", dir="/tmp"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_the_socket_is_0600_and_other_users_cannot_connect(supervise: Harness) -> None:
    """1. The socket is 0600 and ours. 2. nobody gets "permission denied" (exit 4).
    3. Control: with the mode loosened to 0666 nobody connects, and is still refused by uid."""
    _require_python_for(NOBODY)
    with open_folder() as folder:
        path = folder / "ctl.sock"
        run, config = started(supervise, f'[asyncsup]\ncontrol_socket = "{path}"\n')
        mode = os.stat(path)
        assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o600
        assert mode.st_uid == os.geteuid()
        assert not [name for name in os.listdir(folder) if name != "ctl.sock"]  # no temporary left

        denied = ctl(None, "--socket", str(path), "pid", user=NOBODY)
        assert denied.returncode == 4, denied
        assert "permission denied" in denied.stderr

        os.chmod(path, 0o666)
        refused = ctl(None, "--socket", str(path), "pid", user=NOBODY)
        assert refused.returncode == 4, refused
        assert f"uid {NOBODY} may not control this asyncsup" in refused.stderr
        assert ctl(config, "pid").stdout.strip() == str(run.pid)  # its owner still can
        assert run.stop() == 0


def _require_python_for(uid: int) -> None:
    """The interpreter must start as `uid`: one built under /root (pyenv) cannot load its libpython."""
    probe = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", PYTHON, "-c", "pass"]
    ran = subprocess.run(probe, capture_output=True, text=True, timeout=WAIT, cwd="/")
    if ran.returncode != 0:
        pytest.skip(f"{PYTHON} does not start as uid {uid}: {ran.stderr.strip()[-200:]}")


def test_a_stale_socket_is_replaced_and_a_live_one_refused(supervise: Harness, tmp_path: Path) -> None:
    """1. A socket file nobody listens on (a crashed run) is replaced. 2. A second asyncsup on the same
    config exits 1 with "another asyncsup is running on ..."; the first one still answers."""
    stale = tmp_path / "asyncsup.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound, never listening, closed: what kill -9 leaves behind
    run, config = started(supervise, f"[programs.web]\ncommand = {sh(TALKER.format(name='web'))}\n", "web")
    run.wait_line(rf"control socket {re.escape(str(stale))} is stale \(no one listens on it\): replacing it")
    assert ctl(config, "pid").stdout.strip() == str(run.pid)

    second = supervise(config.read_text())
    assert second.wait_exit() == 1
    second.wait_line(rf"asyncsup: another asyncsup is running on {re.escape(str(stale))}$", "stderr")
    assert not second.matching(r"STARTING", "stderr")  # refused before starting anything
    assert ctl(config, "pid").stdout.strip() == str(run.pid)
    assert run.stop() == 0
    assert not stale.exists()


def test_the_protocol_answers_many_requests_per_connection(supervise: Harness, tmp_path: Path) -> None:
    """JSON lines: two requests in one write get two replies; bad ones get a code and the connection
    stays usable; a request over 64 KiB is refused and the connection closed."""
    run, _ = started(supervise, "")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(tmp_path / "asyncsup.sock"))
        replies = sock.makefile("rb")

        def ask(raw: bytes) -> dict[str, Any]:
            sock.sendall(raw)
            answer: dict[str, Any] = json.loads(replies.readline())
            return answer

        sock.sendall(b'{"v": 1, "cmd": "pid"}\n{"v": 1, "cmd": "version", "args": {}}\n')
        assert json.loads(replies.readline())["result"]["pid"] == run.pid
        assert json.loads(replies.readline())["result"]["version"] == __version__
        assert ask(b'{"v": 2, "cmd": "pid"}\n')["code"] == "unsupported_version"
        assert ask(b"pid\n")["code"] == "bad_request"
        typo = ask(b'{"v": 1, "cmd": "stauts"}\n')
        assert typo["code"] == "unknown_command" and "did you mean 'status'" in typo["error"]
        assert ask(b'{"v": 1, "cmd": "start", "args": {"names": "web"}}\n')["code"] == "bad_arguments"
        assert ask(b'{"v": 1, "cmd": "pid"}\n')["ok"] is True
        assert ask(b"x" * (64 * 1024 + 1) + b"\n")["code"] == "bad_request"
        try:
            rest = replies.readline()
        except ConnectionResetError:  # closed with our unread bytes still queued: a reset, not a FIN
            rest = b""
        assert rest == b""
        replies.close()
    assert run.stop() == 0


def test_usage_errors_exit_2_and_no_server_exits_4(tmp_path: Path) -> None:
    config = tmp_path / "asyncsup.toml"
    config.write_text("")
    assert ctl(config).returncode == 2
    assert ctl(config, "start").returncode == 2  # a name is required
    nothing = ctl(None)
    assert nothing.returncode == 2
    lost = ctl(None, "status")
    assert lost.returncode == 2 and "pass -c FILE (or set ASYNCSUP_CONFIG), or --socket PATH" in lost.stderr
    down = ctl(config, "status")
    assert down.returncode == 4
    assert f"cannot connect to asyncsup at {tmp_path / 'asyncsup.sock'}: no such socket" in down.stderr
    json_down = ctl(config, "--json", "status")
    assert json.loads(json_down.stdout)["code"] == "cannot_connect"
    missing = ctl(tmp_path / "nope.toml", "status")
    assert missing.returncode == 2 and "cannot read the file" in missing.stderr


# -- HTTP: /healthz, /readyz, /metrics ------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def parse_metrics(text: str) -> dict[str, dict[str, Any]]:
    """A strict reader of the Prometheus text format: every sample belongs to a family declared
    by HELP and TYPE before it, labels parse completely, values are floats."""
    families: dict[str, dict[str, Any]] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in families, f"family {name} declared twice"
            families[name] = {"type": None, "samples": []}
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert families[name]["type"] is None and kind in ("counter", "gauge", "histogram")
            families[name]["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, raw_labels, value = match.groups()
            labels = dict(LABEL.findall(raw_labels or ""))
            assert ",".join(f'{k}="{v}"' for k, v in labels.items()) == (raw_labels or ""), line
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
            assert families[family]["type"] is not None, f"{name} before its TYPE"
            families[family]["samples"].append((name, labels, float(value)))
    return families


def test_metrics_parse_and_agree_with_status(supervise: Harness, loop_kind: str) -> None:
    run, config = started(
        supervise,
        f"""
        [http]
        listen = "127.0.0.1:0"
        [programs.web]
        command = {sh(TALKER.format(name="web"))}
        startsecs = 0
        [programs.idle]
        command = ["sleep", "1000"]
        autostart = false
        """,
        "web",
        loop=loop_kind,
    )
    port = http_port(run)
    assert get(port, "/healthz") == (200, "ok\n")
    status, text = get(port, "/metrics")
    assert status == 200
    families = parse_metrics(text)
    # The reference parser (prometheus-client's) reads the same families with the same types.
    reference = {f.name: f.type for f in text_string_to_metric_families(text)}
    ours = {name.removesuffix("_total") if fam["type"] == "counter" else name: fam["type"]
            for name, fam in families.items()}  # fmt: skip
    assert reference == ours
    processes = {p["name"]: p for p in json.loads(ctl(config, "--json", "status").stdout)["processes"]}

    states = families["asyncsup_process_state"]["samples"]
    for name, process in processes.items():
        mine = {labels["state"]: value for _, labels, value in states if labels["process"] == name}
        assert sum(mine.values()) == 1 and mine[process["state"]] == 1
    rss_samples = families["asyncsup_process_resident_memory_bytes"]["samples"]
    rss = {labels["process"]: value for _, labels, value in rss_samples}
    assert rss["web"] > 0 and "idle" not in rss  # only live processes have an RSS
    assert families["asyncsup_process_restarts_total"]["type"] == "counter"
    assert families["asyncsup_info"]["samples"] == [("asyncsup_info", {"version": __version__}, 1.0)]
    assert families["asyncsup_ready"]["samples"][0][2] == 1.0
    assert families["process_resident_memory_bytes"]["samples"][0][2] > 0

    lag = families["asyncsup_event_loop_lag_seconds"]
    assert lag["type"] == "histogram"
    buckets = [(labels["le"], value) for name, labels, value in lag["samples"] if name.endswith("_bucket")]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
    count = next(value for name, _, value in lag["samples"] if name.endswith("_count"))
    assert buckets[-1][1] == count
    assert get(port, "/nope")[0] == 404
    assert run.stop() == 0


def test_a_blocked_loop_is_logged_and_counted(supervise: Harness) -> None:
    """SIGSTOP asyncsup for 1.6s, the stimulus: its 1s lag timer then fires at least 0.6s late, over
    the 0.25s threshold. A warning says so, and /metrics counts it."""
    run, _ = started(supervise, '[http]\nlisten = "127.0.0.1:0"\n')
    port = http_port(run)
    before = parse_metrics(get(port, "/metrics")[1])["asyncsup_event_loop_blocked_total"]["samples"][0][2]
    run.signal(signal.SIGSTOP)
    time.sleep(1.6)  # how long the loop is blocked, not a wait for anything
    run.signal(signal.SIGCONT)
    run.wait_line(r"WARNING asyncsup\.control: the event loop was blocked for \d+\.\d\ds", "stderr")
    after = parse_metrics(get(port, "/metrics")[1])["asyncsup_event_loop_blocked_total"]["samples"][0][2]
    assert after >= before + 1
    assert run.stop() == 0


def test_readyz_turns_503_at_sigterm_while_the_drain_goes_on(supervise: Harness, tmp_path: Path,
                                                             loop_kind: str) -> None:
    """1. A critical program is STARTING until the test lets it print its ready line: /readyz 503.
    2. Once it is RUNNING: /readyz 200. 3. SIGTERM: the program starts draining and waits for the
    test; meanwhile /readyz is 503 "shutting down", /healthz 200 and `ctl status` still answers.
    4. The test lets the drain finish: asyncsup exits 0."""
    up, drained = tmp_path / "up", tmp_path / "drained"
    os.mkfifo(up)
    os.mkfifo(drained)
    script = (
        f"trap 'echo draining; read x < {drained}; exit 0' TERM; "
        f"read x < {up}; echo web up; sleep 1000 & wait $!"
    )
    run, config = started(
        supervise,
        f"""
        [asyncsup]
        shutdown_timeout = "60s"
        [http]
        listen = "127.0.0.1:0"
        [programs.web]
        command = {sh(script)}
        ready = {{ line = "web up" }}
        startsecs = 0
        critical = true
        stop_timeout = "60s"
        """,
        loop=loop_kind,
    )
    port = http_port(run)
    run.wait_line(rf"{SUP}web: STOPPED -> STARTING", "stderr")
    assert get(port, "/readyz") == (503, "critical process web is STARTING\n")
    release(up)
    run.wait_line(rf"{SUP}web: STARTING -> RUNNING", "stderr")
    assert get(port, "/readyz") == (200, "ready\n")

    run.signal(signal.SIGTERM)
    run.wait_line(r"^web \| draining$", "stdout")
    assert get(port, "/readyz") == (503, "shutting down (SIGTERM received)\n")
    assert get(port, "/healthz") == (200, "ok\n")
    during = ctl(config, "--json", "status")
    assert json.loads(during.stdout)["processes"][0]["state"] == "STOPPING"
    refused = ctl(config, "start", "web")
    assert refused.returncode == 1 and "asyncsup is shutting down (SIGTERM received)" in refused.stderr
    release(drained)
    assert run.wait_exit() == 0
