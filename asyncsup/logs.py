"""asyncsup's own log lines: text or JSON, written through the same sink as children's stderr.

Sharing the sink is what keeps a supervisor line from landing inside a child's line (supervisord's
stdout mode interleaves at chunk granularity).
"""

from __future__ import annotations

import json
import logging
import time

from .supervisor.output import LineSink

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class SinkHandler(logging.Handler):
    """Hands formatted lines to a LineSink (never blocks the caller on a slow stderr)."""

    def __init__(self, sink: LineSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:  # logging must never take the supervisor down
            self.handleError(record)


def setup_logging(handler: logging.Handler, *, level: int, json_lines: bool) -> None:
    """Make `handler` the one root handler, in the text or JSON format, at `level`."""
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("asyncio").setLevel(max(level, logging.WARNING))


def level_from_flags(configured: str, verbose: int, quiet: int) -> int:
    """-v lowers the configured level to debug, -q raises it one step per q."""
    if verbose:
        return logging.DEBUG
    level = LEVELS.get(configured, logging.INFO)
    return min(logging.CRITICAL, level + 10 * quiet)
