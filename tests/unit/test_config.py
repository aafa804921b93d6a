"""The config loader: every config here is a real TOML file on disk, read through load_config.

Bad configs are one table: the TOML and the exact message a user would read. Messages start
with the path as given, so the tests load "sample.toml" from inside tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from asyncsup.config import (
    Backoff,
    Config,
    Consumer,
    Output,
    Program,
    Ready,
    RetryPolicy,
    Settings,
    describe,
    load_config,
    parse_config,
)
from asyncsup.errors import ConfigError

IS_ROOT = os.geteuid() == 0
UNSET = "ASYNCSUP_TEST_SURELY_UNSET"

# Small building blocks, so each row of the table shows only what is wrong.
WEB = '[programs.web]\ncommand = "sleep 60"\n'
HIGH = '[transports]\nhigh = "memory://"\nfailed = "memory://"\n'
MAIN = HIGH + '[consumers.main]\ntransports = ["high"]\nhandlers = ["app.handlers"]\n'

BAD = [
    # -- types and ranges
    (WEB + 'numprocs = "two"', 'programs.web.numprocs: expected an integer >= 1, got "two"'),
    (WEB + "numprocs = true", "programs.web.numprocs: expected an integer >= 1, got true"),
    (WEB + "numprocs = 0", "programs.web.numprocs: expected an integer >= 1, got 0"),
    (WEB + "numprocs = 1.0", "programs.web.numprocs: expected an integer >= 1, got 1.0"),
    (WEB + "numprocs_start = -1", "programs.web.numprocs_start: expected an integer >= 0, got -1"),
    (WEB + "priority = 1.5", "programs.web.priority: expected an integer, got 1.5"),
    (WEB + 'autostart = "yes"', 'programs.web.autostart: expected true or false, got "yes"'),
    (WEB + 'stdin = "pipe"', 'programs.web.stdin: expected "null" or "inherit", got "pipe"'),
    (WEB + 'umask = "999"', 'programs.web.umask: expected an octal umask like "022", got "999"'),
    (WEB + "umask = 0o1777", 'programs.web.umask: expected an octal umask like "022", got 1023'),
    (
        WEB + "startretries = -1",
        'programs.web.startretries: expected an integer >= 0, or "inf" to retry forever, got -1',
    ),
    (
        WEB + 'autorestart = "unexpected"',
        'programs.web.autorestart: expected "always", "on-failure" or "never", got "unexpected"',
    ),
    (
        WEB + 'autorestart = "on_failure"',
        'programs.web.autorestart: expected "always", "on-failure" or "never", got "on_failure"'
        " (did you mean 'on-failure'?)",
    ),
    (WEB + "exitcodes = [0, 256]", "programs.web.exitcodes[1]: expected an integer 0..255, got 256"),
    (WEB + "exitcodes = 0", "programs.web.exitcodes: expected a list of exit codes 0..255, got 0"),
    (WEB + "flap_limit = 0", "programs.web.flap_limit: expected an integer >= 1, got 0"),
    (WEB + "critical = 1", "programs.web.critical: expected true or false, got 1"),
    ("programs = 3", "programs: expected a table, got 3"),
    ('[programs]\nweb = "sleep 1"', 'programs.web: expected a table, got "sleep 1"'),
    (
        '[programs."web:1"]\ncommand = "x"',
        "programs.\"web:1\": a name may only contain letters, digits, '_', '.' and '-'",
    ),
    # -- unknown and missing keys
    (WEB + "numproc = 2", "programs.web.numproc: unknown key (did you mean 'numprocs'?)"),
    (WEB + 'colour = "red"', "programs.web.colour: unknown key"),
    (
        WEB + 'backoff = { intial = "1s" }',
        "programs.web.backoff.intial: unknown key (did you mean 'initial'?)",
    ),
    (
        WEB + "stdout = { file = 'a.log', backup = 1 }",
        "programs.web.stdout.backup: unknown key (did you mean 'backups'?)",
    ),
    ('[programz.web]\ncommand = "x"', "programz: unknown key (did you mean 'programs'?)"),
    ("[cron]\nx = 1", "cron: unknown key"),
    (
        '[asyncsup]\nshutdown_timout = "1s"',
        "asyncsup.shutdown_timout: unknown key (did you mean 'shutdown_timeout'?)",
    ),
    ("[programs.web]\nnumprocs = 2", "programs.web: missing required key 'command'"),
    ('[programs.web]\ncomand = "x"', "programs.web.comand: unknown key (did you mean 'command'?)"),
    # -- commands
    ('[programs.web]\ncommand = ""', 'programs.web.command: expected a non-empty command, got ""'),
    ("[programs.web]\ncommand = []", "programs.web.command: expected a non-empty command, got []"),
    (
        '[programs.web]\ncommand = "echo \'hi"',
        "programs.web.command: cannot split the command: No closing quotation",
    ),
    (
        '[programs.web]\ncommand = ["sleep", 1]',
        'programs.web.command: expected a command: a string or a list of strings, got ["sleep", 1]',
    ),
    # -- durations and sizes
    (
        WEB + 'startsecs = "soon"',
        'programs.web.startsecs: expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "soon"',
    ),
    (WEB + "stop_timeout = -1", "programs.web.stop_timeout: expected a duration >= 0, got -1"),
    (WEB + 'flap_window = "0s"', 'programs.web.flap_window: expected a duration > 0, got "0s"'),
    ("[asyncsup]\nshutdown_timeout = 0", "asyncsup.shutdown_timeout: expected a duration > 0, got 0"),
    (
        MAIN + 'memory_limit = "256XB"',
        'consumers.main.memory_limit: expected a size like "512k", "50MB" or "1GiB", got "256XB"',
    ),
    (
        WEB + 'stdout = { file = "w.log", max_bytes = "1.5B" }',
        'programs.web.stdout.max_bytes: expected a whole number of bytes, got "1.5B"',
    ),
    # -- backoff and retry
    (WEB + "backoff = { jitter = 1 }", "programs.web.backoff.jitter: expected a number in [0, 1), got 1"),
    (
        WEB + "backoff = { multiplier = 0.5 }",
        "programs.web.backoff.multiplier: expected a number >= 1, got 0.5",
    ),
    (WEB + "backoff = { initial = 0 }", "programs.web.backoff.initial: expected a duration > 0, got 0"),
    (
        WEB + 'backoff = { initial = "10s", max = "5s" }',
        'programs.web.backoff.max: expected a duration >= initial (10s), got "5s"',
    ),
    (
        WEB + 'backoff = { initial = "2m" }',
        'programs.web.backoff.initial: expected a duration <= max (60s), got "2m"',
    ),
    (
        MAIN + 'retry = { delay = "10s", max_delay = "1s" }',
        'consumers.main.retry.max_delay: expected a duration >= delay (10s), got "1s"',
    ),
    (
        MAIN + "retry = { max_retries = -1 }",
        "consumers.main.retry.max_retries: expected an integer >= 0, got -1",
    ),
    # -- signals
    (
        WEB + 'stop_signal = "TREM"',
        'programs.web.stop_signal: expected a signal name like "TERM" or "SIGHUP", or a number,'
        " got \"TREM\" (did you mean 'TERM'?)",
    ),
    (
        WEB + "stop_signal = 99",
        'programs.web.stop_signal: expected a signal name like "TERM" or "SIGHUP", or a number, got 99',
    ),
    (
        WEB + 'forward_signals = ["HUP", "KILL"]',
        "programs.web.forward_signals[1]: SIGKILL cannot be caught, so it cannot be forwarded",
    ),
    (
        WEB + 'forward_signals = ["SIGSTOP"]',
        "programs.web.forward_signals[0]: SIGSTOP cannot be caught, so it cannot be forwarded",
    ),
    (
        WEB + 'forward_signals = ["CHLD"]',
        "programs.web.forward_signals[0]: SIGCHLD tells asyncsup that its own children exited;"
        " it cannot be forwarded",
    ),
    # -- readiness
    (
        WEB + 'ready = { line = "(" }',
        "programs.web.ready.line: invalid regular expression: missing ), unterminated subpattern"
        " at position 0",
    ),
    (
        WEB + 'ready = { tcp = "db" }',
        'programs.web.ready.tcp: expected "host:port" with a port 1..65535, got "db"',
    ),
    (
        WEB + 'ready = { tcp = "db:70000" }',
        'programs.web.ready.tcp: expected "host:port" with a port 1..65535, got "db:70000"',
    ),
    (
        WEB + 'ready = { tcp = "db:1", line = "up" }',
        "programs.web.ready: expected exactly one of tcp, line or command, got tcp and line",
    ),
    (
        WEB + 'ready = { timeout = "1s" }',
        "programs.web.ready: expected exactly one of tcp, line or command, got none",
    ),
    # -- dependencies and names
    (
        WEB + 'depends_on = ["dbb"]\n[programs.db]\ncommand = "x"',
        "programs.web.depends_on[0]: no program named 'dbb' (did you mean 'db'?)",
    ),
    (WEB + 'depends_on = ["db", "db"]', 'programs.web.depends_on[1]: "db" is listed twice'),
    (
        '[programs.a]\ncommand = "x"\ndepends_on = ["b"]\n[programs.b]\ncommand = "x"\ndepends_on = ["a"]',
        "programs.a.depends_on: dependency cycle: a -> b -> a",
    ),
    (
        '[programs.c]\ncommand = "x"\n[programs.a]\ncommand = "x"\ndepends_on = ["c", "b"]\n'
        '[programs.b]\ncommand = "x"\ndepends_on = ["d"]\n[programs.d]\ncommand = "x"\ndepends_on = ["a"]',
        "programs.a.depends_on: dependency cycle: a -> b -> d -> a",
    ),
    (WEB + 'depends_on = ["web"]', "programs.web.depends_on: dependency cycle: web -> web"),
    (
        WEB + 'numprocs = 2\nprocess_name = "w-{num}"\n[programs.api]\ncommand = "x"\nprocess_name = "w-1"',
        "programs.api.process_name: process name 'w-1' is already used by program 'web'",
    ),
    (
        WEB + 'numprocs = 2\n[programs.api]\ncommand = "x"\nprocess_name = "web:{num}"\nnumprocs_start = 1',
        "programs.api.process_name: process name 'web:1' is already used by program 'web'",
    ),
    (
        WEB + 'process_name = "api"\n[programs.api]\ncommand = "x"',
        "programs.web.process_name: process name 'api' is the name of another program",
    ),
    (
        WEB + 'numprocs = 2\nprocess_name = "worker"',
        "programs.web.process_name: must contain {num} when numprocs > 1, so each process has its own name",
    ),
    (
        WEB + 'process_name = "{prog}-{num}"',
        "programs.web.process_name: unknown placeholder {prog} (did you mean 'program'?);"
        " known: {program}, {num}",
    ),
    (
        WEB + 'process_name = "{program}-{num"',
        "programs.web.process_name: invalid template: expected '}' before end of string",
    ),
    (
        WEB + 'process_name = "{program} {num}"',
        "programs.web.process_name: process name 'web 0' may only contain letters, digits,"
        " '_', '.', '-', ':'",
    ),
    # -- environment
    (
        WEB + f'environment = {{ A = "${{{UNSET}}}/x" }}',
        f"programs.web.environment.A: environment variable {UNSET} is not set",
    ),
    (
        WEB + 'environment = { B = "$" }\n',
        'programs.web.environment.B: a "$" must start $NAME or ${NAME}; write "$$" for a literal "$"',
    ),
    (
        WEB + "environment = { A = true }",
        "programs.web.environment.A: expected a string, or false to remove the variable, got true",
    ),
    # -- output
    (
        WEB + 'redirect_stderr = true\nstderr = "off"',
        "programs.web.stderr: cannot be set when redirect_stderr = true",
    ),
    (
        WEB + 'stdout = "logs/web.log"',
        'programs.web.stdout: expected "console", "off", a table like { file = "logs/web.log" } or'
        ' { console = true, prefix = false }, got "logs/web.log"',
    ),
    (WEB + 'stdout = { max_bytes = "1MB" }', "programs.web.stdout: missing required key 'file'"),
    (
        WEB + "stdout = { console = false }",
        'programs.web.stdout.console: expected true (for no output at all: stdout = "off"), got false',
    ),
    (
        WEB + 'stdout = { console = true, file = "a.log" }',
        "programs.web.stdout: expected either console or file, not both",
    ),
    (
        WEB + "stdout = { console = true, prefx = false }",
        "programs.web.stdout.prefx: unknown key (did you mean 'prefix'?)",
    ),
    # -- transports and consumers
    (
        '[transports]\nhigh = "postgres://db/q"',
        "transports.high: expected a URL starting with one of memory://, sqlite://, redis://, rediss://,"
        ' got "postgres://db/q"',
    ),
    (
        '[transports]\nhigh = "sqllite:///q.db"',
        "transports.high: expected a URL starting with one of memory://, sqlite://, redis://, rediss://,"
        " got \"sqllite:///q.db\" (did you mean 'sqlite'?)",
    ),
    (
        '[transports]\nhigh = "sqlite://host/q.db"',
        'transports.high: expected "sqlite:///relative/file.db" or "sqlite:////absolute/file.db",'
        ' got "sqlite://host/q.db"',
    ),
    (
        HIGH + '[consumers.main]\ntransports = ["hihg"]\nhandlers = ["app"]',
        "consumers.main.transports[0]: no transport named 'hihg' (did you mean 'high'?)",
    ),
    (
        '[consumers.main]\ntransports = ["high"]\nhandlers = ["app"]',
        "consumers.main.transports[0]: no transport named 'high' ([transports] is empty)",
    ),
    (
        HIGH + '[consumers.main]\ntransports = ["high", "high"]\nhandlers = ["app"]',
        'consumers.main.transports[1]: "high" is listed twice',
    ),
    (
        HIGH + '[consumers.main]\ntransports = []\nhandlers = ["app"]',
        "consumers.main.transports: expected a non-empty list, got []",
    ),
    (HIGH + '[consumers.main]\ntransports = ["high"]', "consumers.main: missing required key 'handlers'"),
    (
        HIGH + '[consumers.main]\ntransports = ["high"]\nhandlers = ["app/handlers"]',
        'consumers.main.handlers[0]: expected a dotted module name like "app.handlers", got "app/handlers"',
    ),
    (
        HIGH + '[consumers.main]\ntransports = ["high"]\nhandlers = "app.handlers"',
        'consumers.main.handlers: expected a list of modules, got "app.handlers"',
    ),
    (
        MAIN + 'failure_transport = "high"',
        "consumers.main.failure_transport: must not be one of the consumer's transports:"
        " failed messages would come back",
    ),
    (
        MAIN + 'failure_transport = "faild"',
        "consumers.main.failure_transport: no transport named 'faild' (did you mean 'failed'?)",
    ),
    (MAIN + "concurrency = 0", "consumers.main.concurrency: expected an integer >= 1, got 0"),
    (MAIN + 'lease = "0s"', 'consumers.main.lease: expected a duration > 0, got "0s"'),
    (MAIN + "concurency = 4", "consumers.main.concurency: unknown key (did you mean 'concurrency'?)"),
    # -- settings
    (
        '[asyncsup]\nlog_format = "jsno"',
        'asyncsup.log_format: expected "text" or "json", got "jsno" (did you mean \'json\'?)',
    ),
    (
        '[asyncsup]\nlog_level = "warn"',
        'asyncsup.log_level: expected "debug", "info", "warning" or "error", got "warn"'
        " (did you mean 'warning'?)",
    ),
    ('[asyncsup]\ncontrol_socket = ""', 'asyncsup.control_socket: expected a non-empty string, got ""'),
    # -- the file itself
    (
        '[programs.web\ncommand = "x"',
        "invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 14)",
    ),
    ("a = 1\na = 2", "invalid TOML: Cannot overwrite a value (at end of document)"),
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work from tmp_path so messages show the file as a user would name it: sample.toml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(UNSET, raising=False)
    return tmp_path


def write(folder: Path, text: str, name: str = "sample.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(text: str) -> ConfigError:
    Path("sample.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config("sample.toml")
    return caught.value


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize(("toml", "message"), BAD, ids=[message.split(":")[0] for _, message in BAD])
def test_bad_config_is_refused_with_its_message(toml: str, message: str) -> None:
    error = load_error(toml)
    assert str(error) == f"sample.toml: {message}"


def test_the_table_covers_many_kinds_of_error() -> None:
    assert len(BAD) >= 30
    assert len({message for _, message in BAD}) == len(BAD)


@pytest.mark.usefixtures("in_tmp")
def test_error_carries_its_parts() -> None:
    error = load_error(WEB + 'numprocs = "two"')
    assert (error.file, error.path) == ("sample.toml", "programs.web.numprocs")
    assert error.problem == 'expected an integer >= 1, got "two"'


@pytest.mark.usefixtures("in_tmp")
def test_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("nowhere.toml")
    assert str(caught.value) == "nowhere.toml: cannot read the file: No such file or directory"


@pytest.mark.usefixtures("in_tmp")
def test_file_that_is_not_utf8_is_a_config_error() -> None:
    Path("sample.toml").write_bytes(b'[programs.web]\ncommand = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config("sample.toml")
    assert str(caught.value) == "sample.toml: not UTF-8 text (invalid continuation byte at byte 29)"


def test_message_names_the_file_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, WEB + "numprocs = 0")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: programs.web.numprocs: ")


@pytest.mark.skipif(not IS_ROOT, reason="checking users needs root")
@pytest.mark.usefixtures("in_tmp")
def test_unknown_user_is_refused() -> None:
    error = load_error(WEB + 'user = "no-such-user-asyncsup"')
    assert str(error) == "sample.toml: programs.web.user: no such user 'no-such-user-asyncsup'"


def test_user_needs_root(tmp_path: Path) -> None:
    """As a non-root user, switching to another user is refused. When the tests run as root, a
    child process imports asyncsup and then drops to nobody for good before loading."""
    script = textwrap.dedent(
        """
        import os, sys
        import asyncsup.config_schema  # everything imported while /root/.pyenv is still readable
        from asyncsup.config import load_config
        from asyncsup.errors import ConfigError
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        try:
            load_config(sys.argv[1])
        except ConfigError as exc:
            print(exc)
        """
    )
    # nobody cannot traverse pytest's 0700 tmp folders: use a readable folder of our own
    folder = Path(tempfile.mkdtemp(prefix="asyncsup-config-")) if IS_ROOT else tmp_path
    try:
        folder.chmod(0o755)
        path = write(folder, WEB + 'user = "root"')
        path.chmod(0o644)
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True, text=True, timeout=60, check=False, cwd="/",
        )  # fmt: skip
    finally:
        if IS_ROOT:
            shutil.rmtree(folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{path}: programs.web.user: can only switch user when asyncsup runs as root"
    )


# -- good configs ---------------------------------------------------------------------------------


def test_empty_config_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config == Config(file=tmp_path / "sample.toml")
    assert config.settings == Settings()


def test_defaults_are_the_dataclass_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MAIN + WEB))
    assert config.programs == {"web": Program(name="web", command=("sleep", "60"))}
    assert config.consumers == {
        "main": Consumer(name="main", transports=("high",), handlers=("app.handlers",))
    }
    assert config.transports == {"high": "memory://", "failed": "memory://"}


def test_every_key_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCSUP_TEST_DB", "db.internal")
    monkeypatch.setenv("ASYNCSUP_TEST_REMOVED", "gone")
    path = write(
        tmp_path,
        """
        [asyncsup]
        shutdown_timeout = "45s"
        control_socket = "run/asyncsup.sock"
        log_format = "json"
        log_level = "debug"

        [programs.db]
        command = ["postgres", "-D", "data dir"]
        priority = 1
        ready = { tcp = "127.0.0.1:5432", timeout = "30s", interval = "0.25s" }

        [programs.web]
        command = "php bin/console messenger:consume async --time-limit=3600"
        numprocs = 3
        numprocs_start = 1
        process_name = "{program}-{num:02d}"
        directory = "app"
        environment = { DB = "${ASYNCSUP_TEST_DB}:5432", RAW = "$$HOME", ASYNCSUP_TEST_REMOVED = false }
        umask = "027"
        stdin = "inherit"
        autostart = false
        priority = 10
        startsecs = "1.5s"
        startretries = "inf"
        autorestart = false
        exitcodes = [0, 2]
        backoff = { initial = "500ms", multiplier = 1.5, max = "2m", jitter = 0 }
        flap_limit = 5
        flap_window = "1m30s"
        critical = true
        depends_on = ["db"]
        ready = { line = "^ready( now)?$" }
        stop_signal = "SIGQUIT"
        stop_timeout = "20s"
        forward_signals = ["HUP", "SIGUSR1", 12]
        redirect_stderr = true
        stdout = { file = "logs/web.log", max_bytes = "10MiB", backups = 3 }

        [transports]
        high = "sqlite:///var/queue.db?queue=high"
        failed = "redis://127.0.0.1:6379/0?stream=failed"

        [consumers.main]
        transports = ["high"]
        handlers = ["app.handlers", "app.more_handlers"]
        concurrency = 4
        prefetch = 8
        lease = "1m"
        failure_transport = "failed"
        retry = { max_retries = 5, delay = "2s", multiplier = 3, max_delay = "5m", jitter = 0.5 }
        limit = 1000
        time_limit = "1h"
        memory_limit = "256MB"
        failure_limit = 10
        processes = 2
        """,
    )
    config = load_config(path)
    assert config.settings == Settings(
        shutdown_timeout=45.0,
        control_socket=tmp_path / "run/asyncsup.sock",
        log_format="json",
        log_level="debug",
    )
    assert config.programs["db"] == Program(
        name="db",
        command=("postgres", "-D", "data dir"),
        priority=1,
        ready=Ready(tcp=("127.0.0.1", 5432), timeout=30.0, interval=0.25),
    )
    web = config.programs["web"]
    assert web.ready is not None and web.ready.line is not None
    assert web == Program(
        name="web",
        command=("php", "bin/console", "messenger:consume", "async", "--time-limit=3600"),
        numprocs=3,
        numprocs_start=1,
        process_name="{program}-{num:02d}",
        directory=tmp_path / "app",
        environment={"DB": "db.internal:5432", "RAW": "$HOME", "ASYNCSUP_TEST_REMOVED": None},
        umask=0o027,
        stdin="inherit",
        autostart=False,
        priority=10,
        startsecs=1.5,
        startretries=None,
        autorestart="never",
        exitcodes=frozenset({0, 2}),
        backoff=Backoff(initial=0.5, multiplier=1.5, max=120.0, jitter=0.0),
        flap_limit=5,
        flap_window=90.0,
        critical=True,
        depends_on=("db",),
        ready=Ready(line=web.ready.line),
        stop_signal=signal.SIGQUIT,
        stop_timeout=20.0,
        forward_signals=frozenset({signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}),
        redirect_stderr=True,
        stdout=Output(mode="file", file=tmp_path / "logs/web.log", max_bytes=10 * 1024**2, backups=3),
    )
    assert web.ready.line.fullmatch("ready now")
    assert web.process_names() == ["web-01", "web-02", "web-03"]
    assert config.transports == {
        "high": f"sqlite:///{tmp_path}/var/queue.db?queue=high",
        "failed": "redis://127.0.0.1:6379/0?stream=failed",
    }
    assert config.consumers["main"] == Consumer(
        name="main",
        transports=("high",),
        handlers=("app.handlers", "app.more_handlers"),
        concurrency=4,
        prefetch=8,
        lease=60.0,
        failure_transport="failed",
        retry=RetryPolicy(max_retries=5, delay=2.0, multiplier=3.0, max_delay=300.0, jitter=0.5),
        limit=1000,
        time_limit=3600.0,
        memory_limit=256_000_000,
        failure_limit=10,
        processes=2,
    )


def test_relative_paths_are_taken_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "asyncsup"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # not the config folder: the cwd must not matter
    write(
        folder,
        """
        [asyncsup]
        control_socket = "../run/a.sock"
        [programs.web]
        command = "x"
        directory = "/srv/app"
        stderr = { file = "logs/err.log" }
        [transports]
        rel = "sqlite:///q.db"
        up = "sqlite:///../data/q.db?queue=a&x=1"
        abs = "sqlite:////var/lib/q.db?queue=b"
        mem = "sqlite:///:memory:"
        """,
    )
    config = load_config("etc/asyncsup/sample.toml")
    assert config.file == folder / "sample.toml"
    assert config.settings.control_socket == tmp_path / "etc" / "run" / "a.sock"
    assert config.programs["web"].directory == Path("/srv/app")
    assert config.programs["web"].stderr.file == folder / "logs" / "err.log"
    assert config.transports == {
        "rel": f"sqlite:///{folder}/q.db",
        "up": f"sqlite:///{tmp_path}/etc/data/q.db?queue=a&x=1",
        "abs": "sqlite:////var/lib/q.db?queue=b",
        "mem": "sqlite:///:memory:",
    }


def test_paths_follow_the_symlink_not_its_target(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap is a symlink into ..data/; paths are relative to where it shows."""
    (tmp_path / "..data").mkdir()
    write(tmp_path / "..data", '[asyncsup]\ncontrol_socket = "a.sock"\n')
    mounted = tmp_path / "mount"
    mounted.mkdir()
    (mounted / "sample.toml").symlink_to(tmp_path / "..data" / "sample.toml")
    config = load_config(mounted / "sample.toml")
    assert config.settings.control_socket == mounted / "a.sock"


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCSUP_TEST_HOST", "db")
    monkeypatch.setenv("ASYNCSUP_TEST_EMPTY", "")
    path = write(
        tmp_path,
        WEB
        + """environment = { A = "$ASYNCSUP_TEST_HOST:${ASYNCSUP_TEST_HOST}", B = "$$x $$$ASYNCSUP_TEST_HOST",
        C = "plain", D = "${ASYNCSUP_TEST_EMPTY}", E = "$ASYNCSUP_TEST_HOST.local", F = false }
        """.replace("\n        C", " C"),
    )
    environment = load_config(path).programs["web"].environment
    assert environment == {
        "A": "db:db", "B": "$x $db", "C": "plain", "D": "", "E": "db.local", "F": None,
    }  # fmt: skip


def test_environment_can_be_given_instead_of_ours(tmp_path: Path) -> None:
    path = write(tmp_path, WEB + 'environment = { A = "${ONLY_HERE}" }')
    config = load_config(path, environ={"ONLY_HERE": "yes"})
    assert config.programs["web"].environment == {"A": "yes"}


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ('"php bin/console messenger:consume async"', ("php", "bin/console", "messenger:consume", "async")),
        ("""'sh -c "echo a  b; exit 3"'""", ("sh", "-c", "echo a  b; exit 3")),
        ('["sh", "-c", "echo $HOME"]', ("sh", "-c", "echo $HOME")),
        ('["my program", "a b"]', ("my program", "a b")),
        ('"echo $HOME"', ("echo", "$HOME")),
    ],
)
def test_command_shlex_or_list(tmp_path: Path, command: str, argv: tuple[str, ...]) -> None:
    config = load_config(write(tmp_path, f"[programs.web]\ncommand = {command}\n"))
    assert config.programs["web"].command == argv


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("", ["web"]),
        ("numprocs = 2", ["web:0", "web:1"]),
        ("numprocs = 2\nnumprocs_start = 5", ["web:5", "web:6"]),
        ('process_name = "front"', ["front"]),
        ('numprocs = 3\nprocess_name = "{program}_{num:03d}"', ["web_000", "web_001", "web_002"]),
    ],
)
def test_process_names(tmp_path: Path, extra: str, names: list[str]) -> None:
    config = load_config(write(tmp_path, WEB + extra))
    assert config.programs["web"].process_names() == names


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"HUP"', signal.SIGHUP),
        ('"SIGHUP"', signal.SIGHUP),
        ('"hup"', signal.SIGHUP),
        ("1", signal.SIGHUP),
        ('"INT"', signal.SIGINT),
        ('"KILL"', signal.SIGKILL),  # may stop with KILL; only forwarding it is refused
    ],
)
def test_stop_signal_forms(tmp_path: Path, value: str, expected: signal.Signals) -> None:
    config = load_config(write(tmp_path, WEB + f"stop_signal = {value}"))
    assert config.programs["web"].stop_signal is expected


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ('umask = "022"', "umask", 0o022),
        ('umask = "0o027"', "umask", 0o027),
        ("umask = 0o077", "umask", 0o077),
        ("autorestart = true", "autorestart", "always"),
        ('autorestart = "on-failure"', "autorestart", "on-failure"),
        ('startretries = "inf"', "startretries", None),
        ("startretries = 0", "startretries", 0),
        ("exitcodes = []", "exitcodes", frozenset()),
        ("startsecs = 0", "startsecs", 0.0),
        ('stdout = "off"', "stdout", Output(mode="off")),
        ('stdout = "console"', "stdout", Output(mode="console", prefix=True)),
        ("stdout = { console = true }", "stdout", Output(mode="console", prefix=True)),
        ("stderr = { console = true, prefix = false }", "stderr", Output(mode="console", prefix=False)),
        ("priority = -5", "priority", -5),
    ],
)
def test_value_forms(tmp_path: Path, extra: str, field: str, expected: object) -> None:
    config = load_config(write(tmp_path, WEB + extra))
    assert getattr(config.programs["web"], field) == expected


@pytest.mark.skipif(not IS_ROOT, reason="switching user needs root")
def test_user_is_accepted_as_root(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, WEB + 'user = "nobody"'))
    assert config.programs["web"].user == "nobody"


def test_quoted_program_names_appear_quoted_in_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[programs."api.v2"]\ncommand = "x"\n'))
    assert config.programs["api.v2"].process_names() == ["api.v2"]
    with pytest.raises(ConfigError, match=re.escape('programs."api.v2".numprocs: ')):
        load_config(write(tmp_path, '[programs."api.v2"]\ncommand = "x"\nnumprocs = 0\n'))


def test_parse_config_matches_load_config(tmp_path: Path) -> None:
    """parse_config is what reload uses on already-parsed TOML: same result as load_config."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = write(tmp_path, MAIN + WEB + 'directory = "app"\n')
    data = tomllib.loads(path.read_text())
    assert parse_config(data, path) == load_config(path)


def test_describe_is_plain_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MAIN
        + """memory_limit = "1GiB"
        time_limit = "1h"
        [programs.web]
        command = "sleep 60"
        numprocs = 2
        directory = "app"
        stop_signal = "INT"
        forward_signals = ["USR1", "HUP"]
        startretries = "inf"
        ready = { line = "^up$", timeout = "5s" }
        stdout = { file = "w.log", max_bytes = "1MB" }
        """.replace("\n        ", "\n"),
    )
    described = json.loads(json.dumps(describe(load_config(path))))
    assert described["file"] == str(path)
    assert described["asyncsup"] == {
        "shutdown_timeout": 30.0,
        "control_socket": None,
        "log_format": "text",
        "log_level": "info",
    }
    web = described["programs"]["web"]
    assert web["command"] == ["sleep", "60"]
    assert web["directory"] == str(tmp_path / "app")
    assert web["stop_signal"] == "SIGINT"
    assert web["forward_signals"] == ["SIGHUP", "SIGUSR1"]
    assert web["startretries"] is None
    assert web["ready"] == {"tcp": None, "line": "^up$", "command": None, "timeout": 5.0, "interval": 0.5}
    assert web["stdout"] == {
        "mode": "file",
        "file": str(tmp_path / "w.log"),
        "max_bytes": 1_000_000,
        "backups": 10,
        "prefix": False,
    }
    assert web["process_names"] == ["web:0", "web:1"]
    assert web["exitcodes"] == [0]
    main = described["consumers"]["main"]
    assert (main["memory_limit"], main["time_limit"], main["lease"]) == (1024**3, 3600.0, 30.0)
    assert main["retry"]["max_delay"] == 60.0
    assert described["transports"] == {"high": "memory://", "failed": "memory://"}
