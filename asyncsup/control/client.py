"""`asyncsup ctl`: talk to a running asyncsup over its control socket; print like supervisorctl.

The socket is found from the config file (`-c FILE`, or $ASYNCSUP_CONFIG; see address.py), or given
with `--socket`. Plain blocking sockets: one request, one answer, no event loop to start.

Exit codes, supervisorctl's where it has them: 0 ok; 1 an error (a start that failed, a bad reply);
2 usage; 3 `status` lists a process that is not running; 4 cannot connect, or an unknown name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ControlError
from . import render
from .address import default_socket, socket_for_file
from .protocol import (
    BAD_ARGUMENTS,
    NOT_ALLOWED,
    UNKNOWN_NAME,
    Reply,
    decode_event,
    decode_reply,
    encode_request,
)

DESCRIPTION = """\
Control a running asyncsup through its control socket, like supervisorctl.

The socket: [asyncsup] control_socket of the config, else next to the config file and named
after it (/app/asyncsup.toml -> /app/asyncsup.sock). Only its owner (and root) may connect.

Names: a process (web, worker:0), every process of a program (worker or worker:*), or all.

Exit codes: 0 ok; 1 an error (e.g. a start that failed); 2 usage; 3 `status` shows a process that is
not running; 4 cannot connect (not running, permission denied) or an unknown name.
"""

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
CANNOT_CONNECT = "cannot_connect"  # client-side code: no server to ask
EXIT_FOR_CODE = {
    CANNOT_CONNECT: EXIT_UNREACHABLE,
    NOT_ALLOWED: EXIT_UNREACHABLE,  # like "permission denied" on the socket file: LSB's 4
    UNKNOWN_NAME: EXIT_UNREACHABLE,
    BAD_ARGUMENTS: EXIT_USAGE,
}
SETTLED = ("STOPPED", "EXITED", "FATAL")  # supervisorctl's STOPPED_STATES: `status` exits 3
HARMLESS = {"start": ("already started",), "stop": ("not running",), "restart": ("not running",)}


class Connection:
    """One connection to the control socket; requests go one at a time."""

    def __init__(self, path: Path, timeout: float | None) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise ControlError(f"cannot connect to asyncsup at {path}: {_why(exc)}", CANNOT_CONNECT) from None
        self._file = self._sock.makefile("rb")

    def __repr__(self) -> str:
        return f"<Connection to {self.path}>"

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def request(self, cmd: str, args: Mapping[str, Any], *, wait: bool = False) -> Reply:
        """The reply to one request (`wait`: with no timeout); an error reply raises ControlError."""
        if wait:
            self._sock.settimeout(None)
        try:
            self._sock.sendall(encode_request(cmd, args))
        except OSError as exc:  # closed on us: it may still have said why before it closed
            lost = ControlError(f"lost the connection to {self.path}: {_why(exc)}", "closed")
            with contextlib.suppress(OSError, ControlError):
                pending = decode_reply(self._file.readline())
                lost = lost if pending.ok else ControlError(pending.error, pending.code)
            raise lost from None
        reply = decode_reply(self._line("an answer"))
        if not reply.ok:
            raise ControlError(reply.error, reply.code)
        return reply

    def events(self) -> Iterator[tuple[str, int]]:
        """Stream events until the server closes the connection."""
        while line := self._file.readline():
            yield decode_event(line)

    def _line(self, what: str) -> bytes:
        try:
            line = self._file.readline()
        except TimeoutError:
            raise ControlError(f"no {what} from asyncsup at {self.path} in time", "timeout") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to {self.path}: {_why(exc)}", "closed") from None
        if not line:
            raise ControlError(f"asyncsup at {self.path} closed the connection without {what}", "closed")
        return line


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is asyncsup running with this config?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (asyncsup is not running; the socket is left from a crashed run)"
    if isinstance(exc, PermissionError):
        return "permission denied (the socket is 0600: run as the user asyncsup runs as, or as root)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return exc.strerror or str(exc)


# -- the commands ---------------------------------------------------------------------------------


def _status(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.request("status", {"names": args.names}).result
    _print(args, result, lambda: render.status_lines(result))
    settled = any(p["state"] in SETTLED for p in result["processes"])
    return EXIT_NOT_RUNNING if settled else EXIT_OK


def _act(conn: Connection, args: argparse.Namespace) -> int:
    """start, stop, restart and signal: one line per process and what became of it."""
    request = {"names": args.names}
    if args.ctl_command == "signal":
        request["signal"] = args.signal
    results = conn.request(args.ctl_command, request, wait=True).result["results"]
    _print(args, results, lambda: [render.outcome_line(o) for o in results])
    harmless = HARMLESS.get(args.ctl_command, ())
    failed = [o for o in results if not o["done"] and o["error"] not in harmless]
    return EXIT_ERROR if failed else EXIT_OK


def _tail(conn: Connection, args: argparse.Namespace) -> int:
    request = {"name": args.name, "stream": args.stream, "lines": args.lines, "follow": args.follow}
    reply = conn.request("tail", request, wait=args.follow)
    if args.json:
        print(json.dumps(reply.result), flush=True)
    else:
        _write(reply.result["data"])
    if reply.more:
        try:
            for data, lost in conn.events():
                _show_event(args, data, lost)
        except KeyboardInterrupt:  # ^C is how `tail -f` ends
            pass
    return EXIT_OK


def _show_event(args: argparse.Namespace, data: str, lost: int) -> None:
    if args.json:
        print(json.dumps({"data": data, "lost": lost}), flush=True)
        return
    if lost:
        print(f"[asyncsup ctl: {lost} bytes dropped: this terminal read slower than the process wrote]",
              file=sys.stderr)
    _write(data)


def _pid(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.request("pid", {"names": args.names}).result
    processes = result["processes"]
    lines = [str(p["pid"] or 0) for p in processes] if args.names else [str(result["pid"])]
    _print(args, result, lambda: lines)
    return EXIT_ERROR if any(not p["pid"] for p in processes) else EXIT_OK


def _version(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.request("version", {}).result
    _print(args, result, lambda: [result["version"]])
    return EXIT_OK


def _shutdown(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.request("shutdown", {}).result
    words = "Shut down (forced: not waiting for the drain)" if result["forced"] else "Shut down"
    _print(args, result, lambda: [words])
    return EXIT_OK


def _reload(conn: Connection, args: argparse.Namespace) -> int:
    """reread, update: one line per change, then what it did; a config with an error exits 1."""
    result = conn.request(args.ctl_command, {}, wait=args.ctl_command == "update").result
    changes = result["changes"]
    text = [f"{c['change']}" + (f": {'; '.join(c['done'])}" if c["done"] else "") for c in changes]
    _print(args, result, lambda: text or ["no changes"])
    failed = [line for c in changes for line in c["done"] if "failed" in line]
    return EXIT_ERROR if failed else EXIT_OK


def _stop_workers(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.request("stop-workers", {}, wait=True).result
    restarted = result["restarted"]
    _print(args, result, lambda: restarted or ["nothing to restart"])
    return EXIT_ERROR if any("failed" in line for line in restarted) else EXIT_OK


def _print(args: argparse.Namespace, result: Any, text: Callable[[], list[str]]) -> None:
    print(json.dumps(result, indent=2) if args.json else "\n".join(text()), flush=True)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# -- argv -----------------------------------------------------------------------------------------


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `ctl` to asyncsup's subcommands (`common`, the logging flags, does not apply: ctl only prints)."""
    ctl = sub.add_parser("ctl", help="control a running asyncsup: status, start, stop, restart, tail ...",
                         description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ctl.add_argument("-c", "--config", default=os.environ.get("ASYNCSUP_CONFIG"),
                     help="the config asyncsup runs with, to find its socket (default: $ASYNCSUP_CONFIG)")
    ctl.add_argument("-s", "--socket", help="the control socket, instead of finding it from the config")
    ctl.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")
    ctl.add_argument("--timeout", type=float, default=30.0,
                     help="seconds to wait for an answer (default 30; start, stop, restart and tail -f wait "
                          "for their outcome)")
    ctl.set_defaults(func=cmd_ctl, ctl_command=None)
    commands = ctl.add_subparsers(metavar="COMMAND", dest="ctl_command")
    _add_subcommands(commands)


def _add_subcommands(commands: Any) -> None:
    from ..cli import Parser  # cli imports this module inside build_parser(): no cycle at import

    # --json is also accepted after the command (`ctl status --json`); SUPPRESS keeps the ctl-level value.
    output = Parser(add_help=False)
    output.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, parents=[output])
        return parser

    names: dict[str, Any] = {"nargs": "*", "metavar": "NAME", "help": "web, worker:0, worker:* or all"}
    required = {**names, "nargs": "+"}
    command("status", "state, pid, uptime, restarts, last exit, RSS and CPU").add_argument("names", **names)
    for verb in ("start", "stop", "restart"):
        command(verb, f"{verb} processes and wait for the outcome").add_argument("names", **required)
    signal = command("signal", "send a signal to processes")
    signal.add_argument("signal", help="HUP, USR1, TERM ... or a number")
    signal.add_argument("names", **required)
    tail = command("tail", "the last lines a process wrote (-f: and what it writes next)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new output until ^C")
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many lines (default 10)")
    tail.add_argument("name", help="one process: web, or worker:0 when a program has several")
    tail.add_argument("stream", nargs="?", choices=("stdout", "stderr"), default="stdout")
    command("pid", "asyncsup's pid, or the pids of processes").add_argument("names", **names)
    command("version", "the version of the running asyncsup")
    command("shutdown", "drain and stop asyncsup (again: stop now)")
    command("reread", "read the config file again and show what update would change")
    command("update", "apply the config file: start added, stop removed, restart changed (like SIGHUP)")
    command("stop-workers", "deploy: consumers restart with fresh handler code, restart_on_deploy programs "
                            "restart one copy at a time (like SIGUSR2); waits until done")


RUNNERS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "status": _status, "start": _act, "stop": _act, "restart": _act, "signal": _act,
    "tail": _tail, "pid": _pid, "version": _version, "shutdown": _shutdown,
    "reread": _reload, "update": _reload, "stop-workers": _stop_workers,
}


def cmd_ctl(args: argparse.Namespace) -> int:
    if args.ctl_command is None:
        print("asyncsup ctl: a command is required: " + ", ".join(RUNNERS), file=sys.stderr)
        return EXIT_USAGE
    if not args.socket and not args.config:
        print("asyncsup ctl: which asyncsup? pass -c FILE (or set ASYNCSUP_CONFIG), or --socket PATH",
              file=sys.stderr)
        return EXIT_USAGE
    unreadable: ConfigError | None = None
    try:
        path = Path(args.socket) if args.socket else socket_for_file(args.config)
    except ConfigError as exc:
        if args.ctl_command not in ("reread", "update"):
            raise
        # The server reads the file itself and refuses it with the whole error; ask it, where
        # the default socket is (the broken file cannot say where else it would be).
        path, unreadable = default_socket(Path(os.path.abspath(args.config))), exc
    try:
        conn = Connection(path, args.timeout)
        try:
            return RUNNERS[args.ctl_command](conn, args)
        finally:
            conn.close()
    except ControlError as exc:
        if unreadable is not None and exc.code == CANNOT_CONNECT:
            exc = ControlError(f"the config has an error, nothing changed: {unreadable}", "bad_config")
        if args.json:
            print(json.dumps({"ok": False, "error": exc.problem, "code": exc.code}), flush=True)
        print(f"asyncsup ctl: {exc}", file=sys.stderr)
        return EXIT_FOR_CODE.get(exc.code, EXIT_ERROR)
