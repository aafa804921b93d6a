"""The in-process reaper reaps orphans and never steals a status from their real waiter.

Each scenario runs in a fresh Python process that makes itself a child subreaper (this file,
run as a script), so orphans are re-parented to it and nothing leaks into pytest. The script
prints one JSON line of facts; the tests assert on them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

LOOPS = ["asyncio", "uvloop"]


def run_scenario(name: str, loop: str = "asyncio") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, name, loop], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"scenario {name} on {loop} failed:\n{proc.stderr}"
    facts: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    facts["stderr"] = proc.stderr
    return facts


def test_rules_owned_inflight_grace_and_threads() -> None:
    facts = run_scenario("rules")
    assert facts["owned_untouched"], "an owned zombie was reaped"
    assert facts["inflight_untouched"], "an unknown zombie was reaped while a spawn was in flight"
    assert facts["reaped_after_spawn"] == [1, "exit 3"]
    assert facts["young_zombie_waits"] == 1, "a zombie younger than grace was reaped"
    assert facts["thread_child_unseen"], "a child forked by another thread was looked at"
    assert facts["thread_child_code"] == 6
    assert facts["forgotten_after_real_wait"] == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_orphans_of_every_shape_are_reaped_with_their_status(loop: str) -> None:
    """A background job, a setsid'ed grandchild and a 2-level chain; the timer is kept out of it."""
    facts = run_scenario("orphans", loop)
    assert facts["worker_code"] == 0
    assert sorted(facts["reaped"]) == ["exit 4", "exit 7", "exit 9"]
    assert facts["zombies"] == []
    assert "reaped orphan pid" in facts["stderr"]


@pytest.mark.parametrize("loop", LOOPS)
def test_timer_finds_orphans_nobody_told_us_about(loop: str) -> None:
    facts = run_scenario("timer", loop)
    assert facts["reaped"] == ["exit 8"]
    assert facts["worker_alive_meanwhile"]


@pytest.mark.parametrize("loop", LOOPS)
def test_no_status_is_stolen_while_orphans_churn(loop: str) -> None:
    """40 children exit k, 10 of them leaving an orphan; user code waits in a thread and on the loop."""
    facts = run_scenario("nosteal", loop)
    assert facts["codes"] == {str(k): k for k in range(40)}
    assert facts["thread_run"] == 5
    assert facts["loop_spawn"] == 6
    assert facts["orphans_reaped"] == 10
    assert facts["asyncio_complaints"] == []


def test_repr_and_statistics_say_the_state() -> None:
    from asyncsup.reaper import Reaper

    reaper = Reaper()
    reaper.own(123)
    assert repr(reaper) == (
        "<Reaper not running, 0 orphans reaped, 1 own children, 0 live orphans watched, 0 zombies waiting>"
    )
    reaper.disown(123)
    assert reaper.statistics().owned == 0


# -- the scenarios, run in a child process ---------------------------------------------------------


class LogWatch(logging.Handler):
    """Collects a logger's messages and lets a coroutine wait for the n-th one."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.messages: list[str] = []
        self.changed = asyncio.Event()
        logging.getLogger(name).addHandler(self)
        logging.getLogger(name).setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def wait_count(self, n: int, timeout: float = 20) -> None:
        with _fail_after(timeout):
            while len(self.messages) < n:
                self.changed.clear()
                await self.changed.wait()


def _fail_after(seconds: float) -> Any:
    import anyio

    return anyio.fail_after(seconds)


def _statuses(watch: LogWatch) -> list[str]:
    return [m.rpartition("(")[2].rstrip(")") for m in watch.messages]


def _zombie_children() -> list[int]:
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        pids = [int(p) for p in f.read().split()]
    zombies = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    zombies.append(pid)
        except FileNotFoundError:
            pass
    return zombies


def _wait_zombie(pid: int) -> None:
    """Block until pid has exited, leaving it a zombie (WNOWAIT does not reap)."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def _spawn(reaper: Any, command: str) -> int:
    with reaper.spawning():
        proc = await asyncio.create_subprocess_exec("sh", "-c", command)
        reaper.own(proc.pid)
    code = await proc.wait()
    reaper.disown(proc.pid)
    reaper.kick()
    return code


def scenario_rules() -> dict[str, Any]:
    from asyncsup.reaper import Reaper

    facts: dict[str, Any] = {}
    reaper = Reaper(grace=0.0)
    child = subprocess.Popen(["sh", "-c", "exit 3"])
    _wait_zombie(child.pid)
    reaper.own(child.pid)
    reaper._sweep(time.monotonic())
    facts["owned_untouched"] = child.pid in _zombie_children()
    reaper.disown(child.pid)
    with reaper.spawning():
        reaper._sweep(time.monotonic())
        facts["inflight_untouched"] = child.pid in _zombie_children()
    reaper._sweep(time.monotonic())
    stats = reaper.statistics()
    facts["reaped_after_spawn"] = [stats.reaped, stats.last_status]
    child.returncode = 3  # we took its status; tell Popen so it does not wait

    patient = Reaper(grace=60.0)
    child = subprocess.Popen(["sh", "-c", "exit 4"])
    _wait_zombie(child.pid)
    patient._sweep(time.monotonic())
    facts["young_zombie_waits"] = patient.statistics().waiting
    child.wait()
    patient._sweep(time.monotonic())
    facts["forgotten_after_real_wait"] = patient.statistics().waiting

    exited, done, result = threading.Event(), threading.Event(), []

    def in_thread() -> None:
        proc = subprocess.Popen(["sh", "-c", "exit 6"])
        _wait_zombie(proc.pid)
        exited.set()
        done.wait()
        result.append(proc.wait())

    thread = threading.Thread(target=in_thread)
    thread.start()
    exited.wait()
    reaper._sweep(time.monotonic())
    facts["thread_child_unseen"] = reaper.statistics().reaped == 1
    done.set()
    thread.join()
    facts["thread_child_code"] = result[0]
    return facts


async def scenario_orphans() -> dict[str, Any]:
    import anyio

    from asyncsup.reaper import Reaper

    reaper = Reaper(interval=3600)  # only kick, pidfds and SIGCHLD may find them
    watch = LogWatch("asyncsup.reaper")
    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        code = await _spawn(
            reaper,
            "(sleep .2; exit 7) & (setsid sh -c 'sleep .1; exit 4' &); "
            "sh -c '(sh -c \"sleep .1; exit 9\" &)'; exit 0",
        )
        await watch.wait_count(3)
        tg.cancel_scope.cancel()
    return {"worker_code": code, "reaped": _statuses(watch), "zombies": _zombie_children()}


async def scenario_timer() -> dict[str, Any]:
    import anyio

    from asyncsup.reaper import Reaper

    reaper = Reaper(interval=0.2)
    watch = LogWatch("asyncsup.reaper")
    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        with reaper.spawning():
            worker = await asyncio.create_subprocess_exec("sh", "-c", "(sh -c 'exit 8' &); exec sleep 60")
            reaper.own(worker.pid)
        await watch.wait_count(1)
        alive = worker.returncode is None
        worker.kill()
        await worker.wait()
        reaper.disown(worker.pid)
        tg.cancel_scope.cancel()
    return {"reaped": _statuses(watch), "worker_alive_meanwhile": alive}


async def scenario_nosteal() -> dict[str, Any]:
    import anyio

    from asyncsup.reaper import Reaper

    reaper = Reaper()
    watch = LogWatch("asyncsup.reaper")
    complaints = LogWatch("asyncio", logging.WARNING)
    codes: dict[str, int] = {}
    user: dict[str, int] = {}

    async def worker(k: int) -> None:
        codes[str(k)] = await _spawn(reaper, f"exit {k}" if k % 4 else f"(sh -c 'exit 99' &); exit {k}")

    async def thread_run() -> None:
        done = await asyncio.to_thread(subprocess.run, ["sh", "-c", "exit 5"])
        user["thread_run"] = done.returncode

    async def loop_spawn() -> None:  # user code on the loop, not through spawning(): grace's job
        proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 6")
        user["loop_spawn"] = await proc.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        with anyio.fail_after(30):  # a stolen status hangs uvloop's wait(): fail, do not hang
            async with anyio.create_task_group() as batch:
                for k in range(40):
                    batch.start_soon(worker, k)
                batch.start_soon(thread_run)
                batch.start_soon(loop_spawn)
        await watch.wait_count(10)
        tg.cancel_scope.cancel()
    return {
        "codes": codes,
        **user,
        "orphans_reaped": len(watch.messages),
        "asyncio_complaints": complaints.messages,
    }


def _main(name: str, loop: str) -> None:
    from asyncsup.shim import set_subreaper

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    assert set_subreaper(), "cannot become a child subreaper"
    scenario = globals()[f"scenario_{name}"]
    if not asyncio.iscoroutinefunction(scenario):
        facts = scenario()
    elif loop == "uvloop":
        import uvloop

        facts = uvloop.run(scenario())
    else:
        facts = asyncio.run(scenario())
    print(json.dumps(facts))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
