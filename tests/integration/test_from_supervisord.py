"""`asyncsup from-supervisord`: a supervisord user's config, converted and then run as it was meant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from test_config_cli import asyncsup

if TYPE_CHECKING:
    from conftest import Harness

INI = f"""
[supervisord]
nodaemon = true

[program:worker]
command = {sys.executable} -c "import os; print('worker', os.environ['WORKER_ID'], flush=True); input()"
numprocs = 2
process_name = %(program_name)s_%(process_num)02d
environment = WORKER_ID="w%(process_num)d"
startsecs = 0
stopwaitsecs = 5
"""


def test_converted_config_runs_each_process_with_its_own_number(tmp_path: Path, supervise: Harness) -> None:
    (tmp_path / "supervisord.conf").write_text(INI)
    converted = asyncsup("from-supervisord", "supervisord.conf", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert converted.stderr.startswith("asyncsup: converted 1 program(s) from supervisord.conf; 2 note(s)")
    run = supervise(converted.stdout)
    run.wait_line(r"^worker_00 \| worker w0$", "stdout")
    run.wait_line(r"^worker_01 \| worker w1$", "stdout")
    assert run.stop() == 0


def test_output_file_is_written_once_and_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text(INI)
    first = asyncsup("from-supervisord", "supervisord.conf", "-o", "asyncsup.toml", cwd=tmp_path)
    assert (first.returncode, first.stdout) == (0, "")
    assert "[programs.worker]" in (tmp_path / "asyncsup.toml").read_text()
    again = asyncsup("from-supervisord", "supervisord.conf", "-o", "asyncsup.toml", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == "asyncsup: asyncsup.toml: cannot write it: File exists\n"


def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:web]\ncommand = x\nautorestart = sometimes\n")
    result = asyncsup("from-supervisord", "supervisord.conf", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "asyncsup: supervisord.conf: [program:web] autorestart: "
        "expected true, false or unexpected, got 'sometimes'\n"
    )
