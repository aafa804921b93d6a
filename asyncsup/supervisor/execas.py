"""Run a command as another user, or with another umask, the same way on asyncio and uvloop.

uvloop rejects ``user=``, ``group=``, ``extra_groups=`` and ``umask=`` ("unexpected kwargs"),
and a ``preexec_fn`` blocks its loop and is unsafe with threads (PID1.md). So the spawn stays
plain and the command goes through this file, run as a script: it sets the umask, the groups,
the gid and the uid, then execs the command. Names are resolved in the supervisor, once, so the
script needs no passwd lookups and can run with ``-I -S`` (no site, no user paths): it starts
fast and imports nothing from asyncsup, only the standard library.

Order matters: the umask and the groups first, while still root; then the gid, and the uid last,
since after setuid nothing else may be changed. Supplementary groups are set explicitly, to the
target user's (``getgrouplist``): otherwise root's groups would be inherited, and CPython's
``user=`` without ``group=`` famously keeps gid 0.

When exec fails, the script says why on stderr and exits 127 (not found) or 126 (found but
not executable, or any other reason), as a shell does, so exit statuses mean the same on both loops.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False  # typing costs 9 ms of the script's ~15 ms start; only mypy needs it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


def wrap_command(
    argv: Sequence[str], *, user: str | None, umask: int | None, process: str = "program"
) -> tuple[list[str], dict[str, str]]:
    """The argv to spawn and the environment updates (HOME, USER, LOGNAME) for running as `user`.

    Unchanged argv and no updates when neither is set. Apply the updates before the program's
    own ``environment``, so the config can still override them. Raises ``SpawnError`` for an
    unknown user; ``process`` names the process in its message.
    """
    if user is None and umask is None:
        return list(argv), {}
    wrapped = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
    env: dict[str, str] = {}
    if user is not None:
        uid, gid, groups, env = _resolve(user, process, argv)
        wrapped += ["--uid", str(uid), "--gid", str(gid), "--groups", ",".join(map(str, groups))]
    if umask is not None:
        wrapped += ["--umask", oct(umask)]
    return [*wrapped, "--", *argv], env


def _resolve(user: str, process: str, argv: Sequence[str]) -> tuple[int, int, list[int], dict[str, str]]:
    """uid, gid, supplementary groups and login variables of a user name or numeric uid."""
    import pwd

    from ..errors import SpawnError

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise SpawnError(process, argv[0], f"no user named {user!r}") from None
        uid = int(user)  # a bare uid without a passwd entry, as in `docker run --user 1234`
        return uid, uid, [], {"HOME": "/", "USER": user, "LOGNAME": user}
    groups = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))
    login = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
    return entry.pw_uid, entry.pw_gid, groups, login


# -- the script side: runs with -I -S, standard library only -------------------------------------


def _parse(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--name value`` pairs up to ``--``, then the command."""
    options: dict[str, str] = {}
    while args and args[0] != "--":
        if len(args) < 2 or not args[0].startswith("--"):
            _fail(f"bad arguments: {' '.join(args)}", 126)
        options[args[0][2:]] = args[1]
        args = args[2:]
    command = args[1:]
    if not command:
        _fail("no command given", 126)
    return options, command


def _become(options: dict[str, str]) -> None:
    if "umask" in options:
        os.umask(int(options["umask"], 0))
    if "uid" not in options:
        return
    groups = [int(g) for g in options.get("groups", "").split(",") if g]
    try:
        os.setgroups(groups)
        os.setgid(int(options["gid"]))
        os.setuid(int(options["uid"]))
    except OSError as exc:
        _fail(f"cannot switch to uid {options['uid']}: {exc.strerror}", 126)


def _exec(command: list[str]) -> NoReturn:
    """execvp without its lazy imports: after setuid the standard library may be unreadable."""
    name = command[0]
    if "/" in name:
        candidates = [name]
    else:
        path = os.environ.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(folder or ".", name) for folder in path]
    missing = (errno.ENOENT, errno.ENOTDIR)
    error: OSError | None = None
    for candidate in candidates:
        try:
            os.execv(candidate, command)
        except OSError as exc:  # like a shell: the first "found but failed" wins over "not found"
            if error is None or (error.errno in missing and exc.errno not in missing):
                error = exc
    assert error is not None
    code = 127 if error.errno in missing else 126
    _fail(f"cannot execute {name!r}: {error.strerror}", code)


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"asyncsup: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def main(args: list[str]) -> NoReturn:
    options, command = _parse(args)
    _become(options)
    _exec(command)


if __name__ == "__main__":
    main(sys.argv[1:])
