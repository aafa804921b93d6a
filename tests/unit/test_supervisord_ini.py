"""supervisord.conf -> asyncsup: each option lands as asyncsup's own config loader reads it.

Every case converts a real INI file, writes the TOML, and loads that TOML with asyncsup's loader:
the assertions are on the Program a user would run, not on the text in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from asyncsup.config import Config, Program, parse_config
from asyncsup.errors import ConfigError
from asyncsup.supervisord_ini import convert, to_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load(tmp_path: Path, ini: str, environ: dict[str, str] | None = None) -> tuple[Config, str]:
    (tmp_path / "supervisord.conf").write_text(ini)
    converted = convert(tmp_path / "supervisord.conf")
    text = to_toml(converted, "supervisord.conf")
    config = parse_config(tomllib.loads(text), tmp_path / "asyncsup.toml", environ=environ or {})
    return config, text


def program(tmp_path: Path, ini: str, environ: dict[str, str] | None = None) -> Program:
    config, _ = load(tmp_path, ini, environ)
    [only] = config.programs.values()
    return only


def test_supervisord_defaults_are_kept_where_asyncsup_differs(tmp_path: Path) -> None:
    """autorestart defaults to 'unexpected' in supervisord: on-failure, not asyncsup's 'always'."""
    p = program(tmp_path, "[program:app]\ncommand = sleep 1000\n")
    assert p.command == ("sleep", "1000")
    assert (p.autorestart, p.exitcodes, p.startsecs, p.startretries) == ("on-failure", {0}, 1.0, 3)
    assert (p.stop_signal, p.stop_timeout, p.priority, p.autostart) == (signal.SIGTERM, 10.0, 999, True)


def test_program_options_map_one_to_one(tmp_path: Path) -> None:
    ini = """
[program:web]
command = gunicorn app:wsgi  ; inline comments are supervisord's too
numprocs = 2
numprocs_start = 1
process_name = web_%(process_num)02d
priority = 10
autostart = false
autorestart = true
startsecs = 0
startretries = 9
exitcodes = 0,2
stopsignal = QUIT
stopwaitsecs = 30
directory = /tmp
umask = 022
redirect_stderr = true
stdout_logfile = %(here)s/logs/%(program_name)s.log
stdout_logfile_maxbytes = 1MB
stdout_logfile_backups = 4
"""
    p = program(tmp_path, ini)
    assert p.command == ("gunicorn", "app:wsgi")
    assert p.process_names() == ["web_01", "web_02"]
    assert (p.priority, p.autostart, p.autorestart) == (10, False, "always")
    assert (p.startsecs, p.startretries) == (0, 9)
    assert (p.exitcodes, p.stop_signal, p.stop_timeout) == ({0, 2}, signal.SIGQUIT, 30.0)
    assert (p.directory, p.umask, p.redirect_stderr) == (Path("/tmp"), 0o22, True)
    assert p.stdout.file == tmp_path / "logs" / "web.log"
    assert (p.stdout.max_bytes, p.stdout.backups) == (1024 * 1024, 4)  # supervisord's MB is binary


def test_outputs_none_console_and_files(tmp_path: Path) -> None:
    ini = "[program:a]\ncommand = x\nstdout_logfile = NONE\nstderr_logfile = /dev/stdout\n"
    p = program(tmp_path, ini)
    assert (p.stdout.mode, p.stderr.mode) == ("off", "console")


@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/2", "/dev/stderr"])
def test_the_docker_idiom_relays_unlabelled_lines_to_the_console(tmp_path: Path, target: str) -> None:
    """`stdout_logfile=/dev/fd/1` + `maxbytes=0`: supervisord copies the lines raw to its own output
    (JSON logs stay JSON); so must we, and never open and rotate /dev/fd/1 as a file."""
    ini = f"[program:a]\ncommand = x\nstdout_logfile = {target}\nstdout_logfile_maxbytes = 0\n"
    p = program(tmp_path, ini)
    assert (p.stdout.mode, p.stdout.prefix, p.stdout.file) == ("console", False, None)
    assert (p.stderr.mode, p.stderr.prefix) == ("console", True)  # AUTO: our console, labelled


def test_environment_is_split_like_supervisord_and_expanded_when_asyncsup_loads(tmp_path: Path) -> None:
    """Quotes allow commas; %(ENV_X)s is read from asyncsup's environment, never baked in at
    conversion; a literal $ stays literal; [supervisord] environment applies to every program."""
    ini = """
[supervisord]
environment = TZ=UTC,APP_ENV="prod"

[program:app]
command = x
environment = LIST="a,b",HOME_COPY="%(ENV_HOME)s/x",PRICE="5$",APP_ENV=dev
"""
    config, text = load(tmp_path, ini, environ={"HOME": "/home/later"})
    assert "/home/later" not in text
    [p] = config.programs.values()
    assert dict(p.environment) == {
        "TZ": "UTC", "APP_ENV": "dev", "LIST": "a,b", "HOME_COPY": "/home/later/x", "PRICE": "5$"
    }  # fmt: skip


def test_per_process_values_go_through_the_shell_at_run_time(tmp_path: Path) -> None:
    """%(process_num)02d and %(ENV_X)s in a command, and %(process_num)d in environment, are
    worked out by /bin/sh when each process starts: run the converted command as asyncsup would."""
    ini = f"""
[program:w]
command = {sys.executable} -c "import os, sys; print(sys.argv[1:], os.environ['WORKER_ID'])"
    --port 80%(process_num)02d --name "%(ENV_HOSTNAME)s w" 'a $literal'
numprocs = 2
process_name = %(program_name)s-%(process_num)d
environment = WORKER_ID="id-%(process_num)d"
"""
    p = program(tmp_path, ini)
    assert p.command[:2] == ("/bin/sh", "-c") and p.process_names() == ["w-0", "w-1"]
    env = {"ASYNCSUP_PROCESS_NUM": "7", "HOSTNAME": "box", "PATH": os.environ["PATH"]}
    ran = subprocess.run(p.command, env=env, capture_output=True, text=True, check=True)
    assert ran.stdout == "['--port', '8007', '--name', 'box w', 'a $literal'] id-7\n"


def test_sections_and_options_without_an_equivalent_become_notes(tmp_path: Path) -> None:
    ini = """
[unix_http_server]
file = /tmp/s.sock
[program:a]
command = x
stopasgroup = true
stdout_events_enabled = true
colour = blue
[group:g]
programs = a
[eventlistener:mail]
command = crashmail
events = PROCESS_STATE
"""
    _, text = load(tmp_path, ini)
    notes = [line for line in text.splitlines() if line.startswith("# note:")]
    assert any("[unix_http_server] left out" in n for n in notes)
    assert any("[program:a] stdout_events_enabled left out: no event listeners" in n for n in notes)
    assert any("[program:a] stopasgroup left out" in n for n in notes)
    assert any("[program:a] colour left out: not [program:x] options" in n for n in notes)
    assert any("[group:g] left out" in n for n in notes)
    assert any("[eventlistener:mail] left out" in n for n in notes)


def test_include_globs_are_relative_to_the_main_file_and_here_is_each_files_folder(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("[program:b]\ncommand = %(here)s/run\n")
    (tmp_path / "conf.d" / "a.conf").write_text("[program:a]\ncommand = x\n")
    config, _ = load(tmp_path, "[include]\nfiles = conf.d/*.conf\n")
    assert list(config.programs) == ["a", "b"]
    assert config.programs["b"].command == (str(tmp_path / "conf.d" / "run"),)


BAD = [
    ("[program:a]\nautostart = true\n", "[program:a] command: missing (every program needs one)"),
    ("[program:a]\ncommand = x\nautorestart = maybe\n",
     "[program:a] autorestart: expected true, false or unexpected, got 'maybe'"),
    ("[program:a]\ncommand = x\nnumprocs = 2\n",
     "[program:a] process_name: expected a name with %(process_num)d when numprocs > 1, got None"),
    ("[program:a]\ncommand = x %(nope)s\n", "[program:a] command: %(nope)s is not known"),
    ("[program:a]\ncommand = x\nstopsignal = TERMINATE\n",
     "[program:a] stopsignal: expected a signal name or number, got 'TERMINATE'"),
    ("[program:a]\ncommand = x\nenvironment = A=1,B\n",
     "[program:a] environment: expected KEY=\"value\",KEY2=\"value2\", got 'A=1,B'"),
    ("[program:a]\ncommand = 'unclosed\n", "[program:a] command: cannot split it: No closing quotation"),
    ("[supervisord]\nnodaemon = true\n", "no [program:x] section to convert"),
    ("command = x\n", "not a supervisord INI file: File contains no section headers."),
]  # fmt: skip


@pytest.mark.parametrize(("ini", "message"), BAD, ids=[m.split(":")[0][:30] for _, m in BAD])
def test_bad_files_name_the_file_section_option_and_expectation(tmp_path: Path, ini: str, message: str) -> None:  # noqa: E501
    (tmp_path / "supervisord.conf").write_text(ini)
    with pytest.raises(ConfigError) as caught:
        convert(tmp_path / "supervisord.conf")
    assert str(caught.value).startswith(f"{tmp_path / 'supervisord.conf'}: ")
    assert message in str(caught.value)


def test_expansions_in_paths_are_made_now_and_env_in_a_path_is_refused(tmp_path: Path) -> None:
    p = program(tmp_path, "[program:api]\ncommand = x\ndirectory = /srv/%(program_name)s\n")
    assert p.directory == Path("/srv/api")
    (tmp_path / "supervisord.conf").write_text("[program:a]\ncommand = x\ndirectory = %(ENV_HOME)s\n")
    with pytest.raises(ConfigError, match=r"\[program:a\] directory: expected no %\(ENV_X\)s here"):
        convert(tmp_path / "supervisord.conf")
