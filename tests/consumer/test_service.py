"""Consumers under `asyncsup run`: inline ones restart in-process after a limit; others are programs."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from consumer_rig import WAIT, Counter, LogEvent

from asyncsup.config import Config, Consumer, Settings
from asyncsup.consumer.envelope import encode, new_envelope
from asyncsup.consumer.inline import InlineConsumers
from asyncsup.consumer.service import consumer_programs
from asyncsup.errors import ConfigError
from asyncsup.lifecycle import Shutdown
from asyncsup.transports.base import open_transport

HANDLERS = """
from asyncsup import handler

hook = None

@handler("Ping")
async def ping(body: dict) -> None:
    hook(body)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / "svc_handlers.py").write_text(HANDLERS)
    sys.path.insert(0, str(tmp_path))
    module = importlib.import_module("svc_handlers")
    yield module
    sys.path.remove(str(tmp_path))
    del sys.modules["svc_handlers"]


def config_for(tmp_path: Path, **changes: Any) -> Config:
    consumer = Consumer("main", ("q",), ("svc_handlers",), concurrency=2, **changes)
    return Config(file=tmp_path / "app.toml", settings=Settings(shutdown_timeout=7.0),
                  transports={"q": "memory://q"}, consumers={"main": consumer})  # fmt: skip


def test_consumers_with_processes_become_supervised_programs(tmp_path: Path) -> None:
    config = config_for(tmp_path, processes=3)
    programs = consumer_programs(config)
    assert list(programs) == ["consumer-main"]
    program = programs["consumer-main"]
    assert program.command == (sys.executable, "-m", "asyncsup", "consume", "--consumer", "main",
                               "-c", str(tmp_path / "app.toml"))  # fmt: skip
    assert (program.numprocs, program.autorestart, program.stop_timeout) == (3, "always", 7.0)
    assert program.process_names() == ["consumer-main:0", "consumer-main:1", "consumer-main:2"]
    assert consumer_programs(config_for(tmp_path)) == {}  # inline consumers are not programs


@pytest.mark.anyio
async def test_inline_consumer_restarts_in_process_after_its_limit(
    tmp_path: Path, handlers: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """limit = 4 and 10 messages: it stops after 4, restarts, and so on until all are handled;
    a shutdown then ends it for good."""
    seen = Counter()
    handlers.hook = seen.hit
    queue = open_transport("memory://q")
    await queue.publish([encode(new_envelope("Ping", {"n": n})) for n in range(10)])
    shutdown = Shutdown(5)
    with caplog.at_level(logging.INFO, logger="asyncsup.consumer"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(InlineConsumers(config_for(tmp_path, limit=4), shutdown).run)
            await seen.wait_for(10)
            shutdown.request("test")
    restarts = [r for r in caplog.records if "restarting it in-process" in r.getMessage()]
    assert len(restarts) == 2 and "message limit of 4 reached" in restarts[0].getMessage()
    assert sorted(b["n"] for b in seen.calls) == list(range(10))
    assert (await queue.counts()).ready == 0
    await queue.close()


@pytest.mark.anyio
async def test_inline_memory_limit_says_what_to_do_and_is_not_hit_again(
    tmp_path: Path, handlers: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """A memory limit cannot be cured in-process: after the first stop the log says to use
    processes = N, and the restarted consumer runs on without the limit (no restart loop)."""
    seen = Counter()
    handlers.hook = seen.hit
    queue = open_transport("memory://q")
    shutdown = Shutdown(5)
    with caplog.at_level(logging.INFO, logger="asyncsup.consumer"):
        async with anyio.create_task_group() as tg:
            with LogEvent("memory_limit is ignored") as warned:
                tg.start_soon(InlineConsumers(config_for(tmp_path, memory_limit=1), shutdown).run)
                await queue.publish([encode(new_envelope("Ping", {"n": 0}))])
                with anyio.fail_after(WAIT):
                    await warned.wait()
            await queue.publish([encode(new_envelope("Ping", {"n": n})) for n in (1, 2)])
            await seen.wait_for(3)
            shutdown.request("test")
    warnings = [r.getMessage() for r in caplog.records if "memory_limit is ignored" in r.getMessage()]
    assert len(warnings) == 1
    assert "processes = 1" in warnings[0] and "does not give memory back" in warnings[0]
    await queue.close()


@pytest.mark.anyio
async def test_bad_handler_module_fails_before_any_consumer_starts(
    tmp_path: Path, handlers: ModuleType
) -> None:
    config = config_for(tmp_path)
    broken = Consumer("broken", ("q",), ("no_such_handlers_module",))
    config = Config(file=config.file, transports=config.transports,
                    consumers={**config.consumers, "broken": broken})  # fmt: skip
    with pytest.raises(ConfigError, match=r"consumers\.broken\.handlers: cannot import"):
        await InlineConsumers(config, Shutdown(5)).run()
