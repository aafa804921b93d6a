"""One driver per supervisor: how to install it, write its config, and launch it.

Every driver gets the same `ProgramSpec`s and writes the closest equivalent config: children
start at once (startsecs=0), restart on any exit, and their output goes to the supervisor's
stdout (the container setup) or to a rotating file. Only the config syntax differs.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _sup_procfs

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "benchmarks" / ".cache"
LOG_MAX_BYTES = 50 * 1024 * 1024
LOG_BACKUPS = 10

Say = Callable[[str], None]


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    argv: tuple[str, ...]
    numprocs: int = 1
    autorestart: bool = True
    log_file: Path | None = None  # None: relay to the supervisor's stdout
    labelled: bool = True  # on stdout, asyncsup's default `name | line`; False: `prefix = false`


class Driver:
    """Base: a supervisor we can install, configure and launch."""

    name = ""
    # The supervisor's periodic check, in seconds (0 = event-driven). Kills are spread over
    # one period so a poller's restart latency is sampled at random phases, not always the worst.
    tick = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    env: dict[str, str] = {}  # noqa: RUF012 (replaced, never mutated)
    source = ""  # what exactly runs, for the report

    def prepare(self, say: Say) -> None:
        """Install what is missing (first run only)."""

    def launch_argv(self, workdir: Path, programs: list[ProgramSpec]) -> list[str]:
        raise NotImplementedError

    def stop_target(self, launched: int) -> int:
        """The pid that gets SIGTERM to stop the supervisor (what `docker stop` would signal)."""
        return launched


def _ensure_venv(requirement: str, entry: str, say: Say) -> Path:
    """A cached venv with ``requirement`` installed; created on first use, reused after."""
    venv = CACHE / ("venv-" + requirement.replace("==", "-"))
    done = venv / ".installed"
    if not done.exists():
        say(f"installing {requirement} into {venv} (first run only)")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement]
        subprocess.run(pip, check=True, timeout=600)
        done.write_text(requirement + "\n")
    return venv / "bin" / entry


class Supervisord(Driver):
    name = "supervisord"
    tick = 1.0
    requirement = "supervisor==4.3.0"

    def prepare(self, say: Say) -> None:
        self.exe = _ensure_venv(self.requirement, "supervisord", say)

    def launch_argv(self, workdir: Path, programs: list[ProgramSpec]) -> list[str]:
        nprocs = sum(p.numprocs for p in programs)
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={workdir / 'supervisord.log'}",
            f"pidfile={workdir / 'supervisord.pid'}",
            f"childlogdir={workdir}",
            # 3 pipes per child; keep the default (1024, which also sets the per-spawn close
            # loop) unless the fleet needs more, so the 100-child figures are the stock ones.
            f"minfds={max(1024, 3 * nprocs + 64)}",
        ]
        for p in programs:
            lines += self._program(p)
        config = workdir / "supervisord.conf"
        config.write_text("\n".join(lines) + "\n")
        return [str(self.exe), "-c", str(config)]

    @staticmethod
    def _program(p: ProgramSpec) -> list[str]:
        # '%' is an expansion and ' ;' starts a comment in supervisord's INI: escape the first,
        # and our paths never contain the second.
        command = shlex.join(p.argv).replace("%", "%%")
        lines = [
            f"[program:{p.name}]",
            f"command={command}",
            f"numprocs={p.numprocs}",
            "startsecs=0",
            f"autorestart={'true' if p.autorestart else 'false'}",
            "redirect_stderr=true",
        ]
        if p.numprocs > 1:
            lines.append("process_name=%(program_name)s_%(process_num)d")
        if p.log_file is None:
            lines += ["stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0"]
        else:
            lines += [
                f"stdout_logfile={p.log_file}",
                f"stdout_logfile_maxbytes={LOG_MAX_BYTES}",
                f"stdout_logfile_backups={LOG_BACKUPS}",
            ]
        return lines


class Circus(Driver):
    name = "circus"
    tick = 5.0  # check_delay, the ini loader's default
    requirement = "circus==0.19.0"

    def prepare(self, say: Say) -> None:
        self.exe = _ensure_venv(self.requirement, "circusd", say)

    def launch_argv(self, workdir: Path, programs: list[ProgramSpec]) -> list[str]:
        lines = [
            "[circus]",
            # ipc endpoints: no TCP port that another run on this machine could hold.
            f"endpoint = ipc://{workdir / 'ctl.sock'}",
            f"pubsub_endpoint = ipc://{workdir / 'pubsub.sock'}",
            "statsd = false",
        ]
        for p in programs:
            lines += self._watcher(p)
        config = workdir / "circus.ini"
        config.write_text("\n".join(lines) + "\n")
        return [str(self.exe), str(config)]

    @staticmethod
    def _watcher(p: ProgramSpec) -> list[str]:
        lines = [
            f"[watcher:{p.name}]",
            f"cmd = {shlex.join(p.argv)}",
            f"numprocesses = {p.numprocs}",
            f"respawn = {'true' if p.autorestart else 'false'}",
            "copy_env = true",
        ]
        if p.log_file is None:
            lines += ["stdout_stream.class = StdoutStream", "stderr_stream.class = StdoutStream"]
        else:
            lines += [
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {p.log_file}",
                f"stdout_stream.max_bytes = {LOG_MAX_BYTES}",
                f"stdout_stream.backup_count = {LOG_BACKUPS}",
            ]
        return lines


class Asyncsup(Driver):
    """``python -m asyncsup run`` from the repo's venv, on uvloop (its default when installed)."""

    name = "asyncsup"
    tick = 0.0
    extra_args: tuple[str, ...] = ()
    wrapper: tuple[str, ...] = ()

    use_worktree = False  # set by --asyncsup worktree

    def prepare(self, say: Say) -> None:
        venv_python = REPO / ".venv" / "bin" / "python"
        self.python = venv_python if venv_python.exists() else Path(sys.executable)
        if self.use_worktree:
            tree, self.source = REPO, "the working tree"
        else:
            tree, self.source = _snapshot_head(say)
            # Before the venv's editable install on sys.path: the snapshot is what runs.
            self.env = {"PYTHONPATH": str(tree)}
        # An installed package has its bytecode compiled (as pip did for the other two); a
        # working tree being edited does not, and compiling on import cost ~0.1 s of cold start.
        compile_all = [str(self.python), "-m", "compileall", "-q", str(tree / "asyncsup")]
        subprocess.run(compile_all, check=True, stdout=subprocess.DEVNULL, timeout=300)

    def launch_argv(self, workdir: Path, programs: list[ProgramSpec]) -> list[str]:
        lines = ["[asyncsup]", 'shutdown_timeout = "30s"']
        for p in programs:
            lines += self._program(p)
        config = workdir / "asyncsup.toml"
        config.write_text("\n".join(lines) + "\n")
        command = [str(self.python), "-m", "asyncsup", "run", str(config), *self.extra_args]
        return [*self.wrapper, *command]

    @staticmethod
    def _program(p: ProgramSpec) -> list[str]:
        argv = ", ".join(_toml_str(a) for a in p.argv)
        if p.log_file is None:  # the others copy the lines unlabelled, as `prefix = false` does
            stdout = '"console"' if p.labelled else "{ console = true, prefix = false }"
        else:
            stdout = (
                f"{{ file = {_toml_str(str(p.log_file))}, max_bytes = \"50MB\", "
                f"backups = {LOG_BACKUPS} }}"
            )
        return [
            f"[programs.{p.name}]",
            f"command = [{argv}]",
            f"numprocs = {p.numprocs}",
            "startsecs = 0",
            f"autorestart = {_toml_str('always' if p.autorestart else 'never')}",
            "redirect_stderr = true",
            f"stdout = {stdout}",
        ]


class AsyncsupAsyncio(Asyncsup):
    """The same on the stdlib asyncio loop, to tell the loop's share of a figure."""

    name = "asyncsup-asyncio"
    extra_args = ("--loop", "asyncio")


class AsyncsupPid1(Asyncsup):
    """As PID 1 of a fresh PID namespace, so with the shim, as in a container."""

    name = "asyncsup-pid1"
    wrapper = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")

    def stop_target(self, launched: int) -> int:
        # unshare only waits; `docker stop` signals the namespace's PID 1, the shim.
        kids = _sup_procfs.children(launched)
        return kids[0] if kids else launched


def _snapshot_head(say: Say) -> tuple[Path, str]:
    """asyncsup/ as committed at HEAD, copied into the cache once per commit.

    Others edit the working tree while a run goes on (a half-saved file once failed a third
    of the asyncsup runs); a snapshot makes every run of one report measure the same code.
    """
    git = ["git", "-C", str(REPO)]
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    commit = sha.stdout.strip()
    dest = CACHE / f"asyncsup-{commit[:12]}"
    if not dest.exists():
        say(f"snapshot of asyncsup/ at {commit[:12]} into {dest}")
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(
            [*git, "archive", "--format=tar", commit, "asyncsup"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        tmp.rename(dest)
        for old in sorted(CACHE.glob("asyncsup-*"), key=lambda p: p.stat().st_mtime)[:-3]:
            shutil.rmtree(old, ignore_errors=True)  # keep the last three snapshots
    return dest, f"commit {commit[:12]}"


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


DRIVERS: dict[str, type[Driver]] = {
    "supervisord": Supervisord,
    "circus": Circus,
    "asyncsup": Asyncsup,
    "asyncsup-asyncio": AsyncsupAsyncio,
    "asyncsup-pid1": AsyncsupPid1,
}
DEFAULT = ("supervisord", "circus", "asyncsup")
