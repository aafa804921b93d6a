"""argv -> commands. Parsing and dispatch only; the work lives in the modules named by each command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._version import __version__
from .errors import AsyncsupError, ConfigError

EXIT_USAGE = 2
OWN_COMMANDS = ("run", "check", "from-supervisord")  # the commands this module parses itself


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"asyncsup: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AsyncsupError as exc:
        print(f"asyncsup: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # ^C before our handlers exist: no traceback
        return 130
    return code


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; for one of OWN_COMMANDS, only what parses it: `asyncsup run` imports
    neither the consumer's commands nor ctl's, nor builds their twenty parsers (~7 ms of a cold
    start; the usage and the errors of that command are the same)."""
    parser = Parser(
        prog="asyncsup",
        description="Supervise programs as PID 1 and consume queues with Python handlers.",
    )
    parser.add_argument("--version", action="version", version=f"asyncsup {__version__}")
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logs (-vv: per message)")
    common.add_argument("-q", "--quiet", action="count", default=0, help="fewer logs")
    common.add_argument("--log-format", choices=("text", "json"), help="default: from the config, or text")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="supervise programs and run consumers")
    run.add_argument("config", help="the TOML config file")
    run.add_argument("--no-shim", action="store_true", help="as PID 1, reap in-process (no shim)")
    run.add_argument("--subreaper", action="store_true", help="not PID 1: adopt and reap orphans anyway")
    loop = os.environ.get("ASYNCSUP_LOOP", "auto")
    run.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default=loop)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", parents=[common], help="validate a config and print it resolved")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)

    convert = sub.add_parser("from-supervisord", help="convert a supervisord.conf to an asyncsup config")
    convert.add_argument("ini", help="the supervisord config file (its [include] files are read too)")
    convert.add_argument("-o", "--output", help="write the TOML here (a new file) instead of stdout")
    convert.set_defaults(func=cmd_from_supervisord)
    if command in OWN_COMMANDS:
        return parser

    from .consumer.commands import add_commands

    add_commands(sub, common)
    from .control.client import add_commands as add_control_commands

    add_control_commands(sub, common)
    return parser


class Parser(argparse.ArgumentParser):
    """argparse's help formatter imports shutil (and so bz2, lzma and zlib: ~0.5 MB of RSS for the
    life of `asyncsup run`) only to learn the terminal's width; os tells it as well. Subcommand
    parsers are of the same class (add_subparsers passes it on)."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # Every HelpFormatter takes width; typeshed's protocol for formatter_class names only prog.
        make: Callable[..., argparse.HelpFormatter] = self.formatter_class
        return make(prog=self.prog, width=_help_width())


def _help_width() -> int:
    """What shutil.get_terminal_size() gives argparse: $COLUMNS, else the terminal's, else 80;
    minus the 2 columns argparse keeps free."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 80
        except (OSError, ValueError):
            columns = 80
    return (columns or 80) - 2


def cmd_check(args: argparse.Namespace) -> int:
    from .config import describe, load_config

    config = load_config(args.config)
    print(json.dumps(describe(config), indent=2, ensure_ascii=False))
    return 0


def cmd_from_supervisord(args: argparse.Namespace) -> int:
    from .supervisord_ini import check_loads, convert, to_toml

    converted = convert(args.ini)
    text = to_toml(converted, args.ini)
    problem = check_loads(text, args.output or "asyncsup.toml")
    if args.output:
        try:
            with open(args.output, "x", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise ConfigError(args.output, "", f"cannot write it: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    print(f"asyncsup: converted {len(converted.programs)} program(s) from {args.ini}; "
          f"{len(converted.notes)} note(s) in the output say what differs", file=sys.stderr)  # fmt: skip
    if problem:
        print(f"asyncsup: warning: on this machine the result does not load: {problem}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import run

    config = load_config(args.config)  # before the shim: a bad config exits 2 right here
    return run(config, args)


def run_loop(main: Callable[[], Coroutine[Any, Any, int]], loop: str = "auto") -> int:
    """Run a coroutine on uvloop when installed (unless told otherwise), else on asyncio."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            return int(uvloop.run(main()))
    _use_pidfd_watcher()
    return asyncio.run(main())


def _use_pidfd_watcher() -> None:
    """Before 3.12 asyncio's default watcher runs one thread per live child; pidfds need none."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # an old kernel: keep the default watcher
            return
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
