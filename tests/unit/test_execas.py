"""Running a command as another user and umask through the exec wrapper, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import os
import pwd
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from asyncsup.errors import SpawnError
from asyncsup.supervisor.execas import wrap_command

LOOPS = ["asyncio", "uvloop"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def run_on(loop: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


async def spawn(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """Spawn the way the supervisor does (no user=/umask=, which uvloop rejects); code and output."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return await proc.wait(), out.decode()


def status_fields(output: str) -> dict[str, list[str]]:
    fields = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Uid", "Gid", "Groups"):
            fields[key] = value.split()
    return fields


def test_nothing_to_change_leaves_the_command_alone() -> None:
    assert wrap_command(["php", "x"], user=None, umask=None) == (["php", "x"], {})


def test_the_wrapper_is_the_same_python_in_isolated_mode() -> None:
    argv, _ = wrap_command(["true"], user=None, umask=0o22)
    assert argv[:3] == [sys.executable, "-I", "-S"]
    assert argv[3].endswith("execas.py")
    assert argv[-3:] == ["0o22", "--", "true"]


def test_an_unknown_user_is_a_spawn_error_naming_the_process() -> None:
    with pytest.raises(SpawnError, match=r"web: cannot start 'php': no user named 'no-such-user'"):
        wrap_command(["php"], user="no-such-user", umask=None, process="web")


def test_a_bare_uid_without_passwd_entry_gets_its_own_gid_and_no_groups() -> None:
    uid = next(u for u in range(40000, 50000) if not _has_uid(u))
    argv, env = wrap_command(["id"], user=str(uid), umask=None)
    assert argv[argv.index("--uid") + 1] == str(uid)
    assert argv[argv.index("--gid") + 1] == str(uid)
    assert argv[argv.index("--groups") + 1] == ""
    assert env == {"HOME": "/", "USER": str(uid), "LOGNAME": str(uid)}


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@needs_root
@pytest.mark.parametrize("loop", LOOPS)
def test_runs_as_nobody_with_nobodys_ids_groups_and_login_variables(loop: str, tmp_path: Path) -> None:
    """PID1 case 27: Uid = Gid = 65534 x4, root's groups dropped, HOME/USER/LOGNAME set."""
    secret = tmp_path / "root-only"
    secret.write_text("")
    secret.chmod(0o600)
    script = (
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status; "
        'echo "env $HOME $USER $LOGNAME"; '
        f"if echo x >> {secret} 2>/dev/null; then echo wrote; else echo denied; fi"
    )
    argv, env = wrap_command(["sh", "-c", script], user="nobody", umask=None)
    code, out = run_on(loop, lambda: spawn(argv, env))
    nobody = pwd.getpwnam("nobody")
    groups = sorted(str(g) for g in set(os.getgrouplist("nobody", nobody.pw_gid)))
    assert code == 0, out
    fields = status_fields(out)
    assert fields["Uid"] == [str(nobody.pw_uid)] * 4
    assert fields["Gid"] == [str(nobody.pw_gid)] * 4
    assert sorted(fields.get("Groups", [])) == groups
    assert "0" not in fields.get("Groups", [])
    assert f"env {nobody.pw_dir} nobody nobody" in out
    assert "denied" in out


@needs_root
@pytest.mark.parametrize("loop", LOOPS)
def test_umask_applies_to_files_the_program_creates(loop: str, tmp_path: Path) -> None:
    argv, env = wrap_command(["sh", "-c", "touch made; stat -c %a made"], user=None, umask=0o027)
    code, out = run_on(loop, lambda: spawn(argv, env, cwd=tmp_path))
    assert (code, out.strip()) == (0, "640")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("command", "code", "reason"),
    [
        ("/nonexistent/prog", 127, "No such file or directory"),
        ("no-such-command-anywhere", 127, "No such file or directory"),
        ("{tmp}/not-executable", 126, "Permission denied"),
    ],
)
def test_exec_failures_exit_like_a_shell(
    loop: str, command: str, code: int, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    command = command.format(tmp=tmp_path)
    argv, env = wrap_command([command], user=None, umask=0o022)
    got, out = run_on(loop, lambda: spawn(argv, env))
    assert got == code
    assert out.strip() == f"asyncsup: cannot execute {command!r}: {reason}"
