"""The config through the CLI: `asyncsup check` prints it resolved; a bad one is one line and exit 2.

A user types `asyncsup check app.toml` before a deploy, and reads one line when it is wrong: the
file, the key path, what was expected, what was found, and a "did you mean" for typos. `asyncsup run`
on a bad config starts nothing at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def asyncsup(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "asyncsup", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


GOOD = """
[asyncsup]
shutdown_timeout = "1m30s"

[programs.web]
command = "gunicorn app:wsgi --bind 0.0.0.0:8000"
numprocs = 2
directory = "srv"
stop_signal = "QUIT"
stop_timeout = "500ms"
forward_signals = ["HUP", "SIGUSR1"]
environment = { GREETING = "hi ${WHO}", SECRET = false }
ready = { tcp = "127.0.0.1:8000" }
stdout = { file = "logs/web.log", max_bytes = "64KiB", backups = 3 }

[programs.worker]
command = ["php", "bin/console", "messenger:consume", "async"]
depends_on = ["web"]
autorestart = "on-failure"
exitcodes = [0, 2]
startretries = "inf"
backoff = { initial = "100ms", max = "1m" }
"""


def test_check_prints_the_resolved_config_as_json(tmp_path: Path) -> None:
    (tmp_path / "app.toml").write_text(GOOD)
    result = asyncsup("check", "app.toml", cwd=tmp_path, env={"WHO": "there"})
    assert (result.returncode, result.stderr) == (0, "")
    config = json.loads(result.stdout)
    assert config["file"] == str(tmp_path / "app.toml")
    assert config["asyncsup"]["shutdown_timeout"] == 90
    web, worker = config["programs"]["web"], config["programs"]["worker"]
    assert web["command"] == ["gunicorn", "app:wsgi", "--bind", "0.0.0.0:8000"]
    assert web["process_names"] == ["web:0", "web:1"]
    assert web["directory"] == str(tmp_path / "srv")  # relative to the config file, not the cwd
    assert (web["stop_signal"], web["stop_timeout"]) == ("SIGQUIT", 0.5)
    assert web["forward_signals"] == ["SIGHUP", "SIGUSR1"]
    assert web["environment"] == {"GREETING": "hi there", "SECRET": None}
    assert web["ready"]["tcp"] == ["127.0.0.1", 8000]
    assert web["stdout"] == {
        "mode": "file", "file": str(tmp_path / "logs" / "web.log"), "max_bytes": 65536, "backups": 3,
        "prefix": False,
    }  # fmt: skip
    assert worker["depends_on"] == ["web"]
    assert (worker["autorestart"], worker["exitcodes"]) == ("on-failure", [0, 2])
    assert worker["startretries"] is None  # "inf": retry forever
    assert (worker["backoff"]["initial"], worker["backoff"]["max"]) == (0.1, 60)


def test_check_is_independent_of_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.toml").write_text(GOOD)
    result = asyncsup("check", str(tmp_path / "conf" / "app.toml"), cwd=Path("/"), env={"WHO": "x"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["programs"]["web"]["directory"] == str(tmp_path / "conf" / "srv")


BAD = {
    "typo": (
        '[programs.web]\ncomand = "sleep 1"\n',
        "programs.web.comand: unknown key (did you mean 'command'?)",
    ),
    "typo-in-settings": (
        '[asyncsup]\nshutdown_timout = "3s"\n',
        "asyncsup.shutdown_timout: unknown key (did you mean 'shutdown_timeout'?)",
    ),
    "wrong-type": (
        '[programs.web]\ncommand = "sleep 1"\nnumprocs = "two"\n',
        'programs.web.numprocs: expected an integer >= 1, got "two"',
    ),
    "unknown-dependency": (
        '[programs.web]\ncommand = "x"\ndepends_on = ["dbb"]\n[programs.db]\ncommand = "x"\n',
        "programs.web.depends_on[0]: no program named 'dbb' (did you mean 'db'?)",
    ),
    "cycle": (
        '[programs.a]\ncommand = "x"\ndepends_on = ["b"]\n[programs.b]\ncommand = "x"\ndepends_on = ["a"]\n',
        "programs.a.depends_on: dependency cycle: a -> b -> a",
    ),
    "signal-typo": (
        '[programs.web]\ncommand = "x"\nstop_signal = "TREM"\n',
        "programs.web.stop_signal: expected a signal name like \"TERM\" or \"SIGHUP\", or a number, "
        "got \"TREM\" (did you mean 'TERM'?)",
    ),
    "unset-variable": (
        '[programs.web]\ncommand = "x"\nenvironment = { A = "${ASYNCSUP_TEST_SURELY_UNSET}" }\n',
        "programs.web.environment.A: environment variable ASYNCSUP_TEST_SURELY_UNSET is not set",
    ),
    "invalid-toml": ('[programs.web\ncommand = "x"\n', "invalid TOML: "),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_bad_config_is_one_line_exit_2_and_starts_nothing(tmp_path: Path, case: str, command: str) -> None:
    text, message = BAD[case]
    marker = tmp_path / "STARTED"
    starter = f'[programs.canary]\ncommand = ["touch", {json.dumps(str(marker))}]\nstartsecs = 0\n'
    # the canary comes first so that a partial start would have run it
    (tmp_path / "bad.toml").write_text(starter + text if "[programs." in text else text + starter)
    result = asyncsup(command, "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"asyncsup: bad.toml: {message}")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = asyncsup("run", "nowhere.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "asyncsup: nowhere.toml: cannot read the file: No such file or directory\n"


def test_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "app.toml").write_text('[programs.web]\ncommand = "x"\n')
    result = asyncsup("run", "app.toml", "--loop", "trio", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'trio'" in result.stderr


def test_no_command_prints_usage_and_exits_2(tmp_path: Path) -> None:
    result = asyncsup(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: asyncsup")
    assert "run" in result.stderr and "check" in result.stderr


def test_version(tmp_path: Path) -> None:
    result = asyncsup("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("asyncsup ")
