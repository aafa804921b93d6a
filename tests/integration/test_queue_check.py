"""`asyncsup queue check` (and `send` stamping versions) as real processes, on a real SQLite file and
on the real Redis: what would decode, what would not and why, the exit codes, and that the check
received, leased and changed nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncsup.consumer.envelope import Envelope, decode, encode
from asyncsup.consumer.outcomes import UNDECODABLE
from asyncsup.transports.base import open_transport

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "transports"))
import redis_rig  # noqa: E402

WAIT = 60.0

HANDLERS = '''
from dataclasses import dataclass

from asyncsup import handler, upcaster


@dataclass
class Resize:
    __version__ = 2  # v1 had "size" where v2 has "width"
    image_id: int
    width: int


@handler
async def resize(msg: Resize) -> None: ...


@upcaster("Resize", from_version=1)
def resize_v1(body: dict) -> dict:
    return {"image_id": body["image_id"], "width": body["size"]}


@handler("Delete")
def delete(body: dict) -> None: ...
'''

CONFIG = """
[transports]
jobs = "{jobs}"
good = "{good}"
failed = "{failed}"

[consumers.main]
transports = ["jobs", "good"]
handlers = ["check_handlers"]
failure_transport = "failed"
"""

GOOD = [  # (type, body, version given to `send`, or None: what the handler modules say)
    ("Resize", {"image_id": 1, "width": 800}, None),
    ("Resize", {"image_id": 2, "size": 400}, 1),
    ("Delete", {"image_id": 3}, None),
]
BAD = [
    ("Resize", {"image_id": 4, "width": "wide"}, None),  # does not fit Resize
    ("Resize", {"image_id": 5, "width": 1, "dpi": 2}, 3),  # newer than the handler
    ("Resize", {"image_id": 6, "width": 1}, 1),  # the v1 upcaster raises KeyError: 'size'
    ("Crop", {"image_id": 7}, None),  # no handler
]


def asyncsup(cwd: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asyncsup", *argv], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=WAIT)  # fmt: skip


def write_app(folder: Path, **urls: str) -> Path:
    (folder / "check_handlers.py").write_text(HANDLERS)
    (folder / "app.toml").write_text(CONFIG.format(**urls))
    return folder


def send_all(cwd: Path, transport: str, messages: list[tuple[str, dict[str, Any], int | None]]) -> None:
    for kind, body, version in messages:
        extra = ["--message-version", str(version)] if version else []
        done = asyncsup(cwd, "send", transport, kind, json.dumps(body), "-c", "app.toml", *extra)
        assert done.returncode == 0, done.stderr


def publish_raw(url: str, data: bytes) -> None:
    async def main() -> None:
        transport = open_transport(url)
        try:
            await transport.publish([data])
        finally:
            await transport.close()

    anyio.run(main)


def snapshot(url: str) -> tuple[Any, list[tuple[str, bytes, int]]]:
    """Counts and every message as browse shows it (receipt, bytes, deliveries)."""

    async def main() -> tuple[Any, list[tuple[str, bytes, int]]]:
        transport = open_transport(url)
        try:
            seen = await transport.browse(10_000)
            return await transport.counts(), [(d.receipt, d.data, d.deliveries) for d in seen]
        finally:
            await transport.close()

    return anyio.run(main)


def lease_one(url: str) -> None:
    """Receive one message and keep its lease (a consumer busy with it): in flight during the check."""

    async def main() -> None:
        transport = open_transport(url)
        try:
            assert len(await transport.receive(1, lease=600, wait=0)) == 1
        finally:
            await transport.close()

    anyio.run(main)


def fill(cwd: Path, jobs: str) -> None:
    """Good and bad messages on `jobs` (one of them in flight), only good ones on `good`."""
    send_all(cwd, "jobs", GOOD)
    lease_one(jobs)
    send_all(cwd, "jobs", BAD)
    publish_raw(jobs, b"not json at all")
    done = asyncsup(cwd, "send", "jobs", "Delete", '{"image_id": 8}', "--delay", "1h", "-c", "app.toml")
    assert done.returncode == 0, done.stderr
    send_all(cwd, "good", GOOD)


def check_report(cwd: Path) -> None:
    """The JSON and text reports of the messages `fill` queued."""
    done = asyncsup(cwd, "queue", "check", "-c", "app.toml", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["ok"], report["checked"], report["would_fail"]) == (False, 12, 5)
    jobs, good, failed = report["transports"]
    assert (jobs["transport"], jobs["role"], jobs["checked"], jobs["ok"]) == ("jobs", "read by main", 9, 4)
    assert (good["checked"], good["would_fail"]) == (3, 0)
    assert (failed["role"], failed["checked"]) == ("failure queue", 0)
    types = {t["type"]: t for t in jobs["types"]}
    assert sorted(types) == ["<undecodable>", "Crop", "Delete", "Resize"]
    resize = types["Resize"]
    assert (resize["ok"], resize["would_fail"], resize["versions"]) == (2, 3, {"1": 2, "2": 2, "3": 1})
    reasons = {r["reason"]: r for r in resize["reasons"]}
    assert set(reasons) == {
        "body does not fit Resize: width: expected an integer, got string 'wide'",
        "Resize version 3 is newer than this consumer's 2",
        "upcaster check_handlers.resize_v1 (Resize version 1 -> 2) raised KeyError: 'size'",
    }
    assert all(r["count"] == 1 and len(r["examples"]) == 1 for r in reasons.values())
    [crop] = types["Crop"]["reasons"]
    assert crop["reason"] == "no handler for message type 'Crop' (known: Delete, Resize)"
    assert types["<undecodable>"]["reasons"][0]["reason"].startswith("not a JSON envelope")
    assert types["Delete"]["ok"] == 2  # the delayed one included

    text = asyncsup(cwd, "queue", "check", "-c", "app.toml")
    assert text.returncode == 1, text.stderr
    assert "jobs (read by main): 9 checked, 4 ok, 5 would fail" in text.stdout
    assert "  Resize (v1: 2, v2: 2, v3: 1): 2 ok, 3 would fail" in text.stdout
    assert "    1 x Resize version 3 is newer than this consumer's 2" in text.stdout
    last = text.stdout.splitlines()[-1]
    assert last == "5 of 12 message(s) in 3 transport(s) would not decode with this code"

    only_good = asyncsup(cwd, "queue", "check", "good", "-c", "app.toml")
    assert only_good.returncode == 0, only_good.stderr
    assert "all 3 message(s) in 1 transport(s) would decode with this code" in only_good.stdout


def test_queue_check_on_sqlite_reports_what_would_fail_and_changes_nothing(tmp_path: Path) -> None:
    """1. Queue good and bad messages (one in flight, one delayed). 2. `queue check` exits 1 and
    says, per transport and type, what would fail and why. 3. Every row is as it was."""
    db = tmp_path / "queue.db"
    urls = {name: f"sqlite:///{db}?queue={name}" for name in ("jobs", "good", "failed")}
    cwd = write_app(tmp_path, **urls)
    fill(cwd, urls["jobs"])
    rows = "SELECT * FROM asyncsup_queue ORDER BY id"
    with sqlite3.connect(db) as conn:
        before = conn.execute(rows).fetchall()

    check_report(cwd)

    with sqlite3.connect(db) as conn:
        assert conn.execute(rows).fetchall() == before  # bodies, leases, deliveries, due times
    assert snapshot(urls["jobs"])[0].in_flight == 1


@pytest.mark.redis
def test_queue_check_on_redis_reports_what_would_fail_and_changes_nothing(tmp_path: Path) -> None:
    with redis_rig.own_prefix() as prefix:
        urls = {name: redis_rig.url(f"{prefix}{name}") for name in ("jobs", "good", "failed")}
        cwd = write_app(tmp_path, **urls)
        fill(cwd, urls["jobs"])
        before = {name: snapshot(url) for name, url in urls.items()}
        check_report(cwd)
        assert {name: snapshot(url) for name, url in urls.items()} == before
        assert before["jobs"][0].in_flight == 1 and before["jobs"][0].delayed == 1


def test_failed_messages_are_checked_against_the_consumers_of_their_origin(tmp_path: Path) -> None:
    """Messages in the failure queue are checked as `failed retry` would send them back: after a
    deploy that adds the missing upcaster, the v1 message that failed would decode."""
    urls = {name: f"sqlite:///{tmp_path}/queue.db?queue={name}" for name in ("jobs", "good", "failed")}
    cwd = write_app(tmp_path, **urls)
    (cwd / "check_handlers.py").write_text(HANDLERS.replace("@upcaster", "# @upcaster"))  # old code
    send_all(cwd, "jobs", [("Resize", {"image_id": 2, "size": 400}, 1)])
    publish_raw(urls["jobs"], b"\xff not utf-8")
    consume = asyncsup(cwd, "consume", "jobs", "-c", "app.toml", "--limit", "2")
    assert consume.returncode == 0, consume.stderr
    [failed] = [r for r in json.loads(asyncsup(cwd, "stats", "--json", "-c", "app.toml").stdout)
                if r["transport"] == "failed"]  # fmt: skip
    assert failed["ready"] == 2

    edited = Envelope("e1", UNDECODABLE, None, 1, {"origin": "jobs", "raw_base64": "%% not base64"})
    publish_raw(urls["failed"], encode(edited))

    (cwd / "check_handlers.py").write_text(HANDLERS)  # the deploy brings the upcaster
    done = asyncsup(cwd, "queue", "check", "failed", "--json", "-c", "app.toml")
    assert done.returncode == 1, done.stderr  # the undecodable ones still would not decode
    [report] = json.loads(done.stdout)["transports"]
    types = {t["type"]: t for t in report["types"]}
    assert (types["Resize"]["ok"], types["Resize"]["versions"]) == (1, {"1": 1})
    reasons = {r["reason"] for r in types["<undecodable>"]["reasons"]}
    assert types["<undecodable>"]["would_fail"] == 2 and "its raw_base64 header is not base64" in reasons


def test_send_stamps_the_version_the_handler_modules_declare(tmp_path: Path) -> None:
    urls = {name: f"sqlite:///{tmp_path}/queue.db?queue={name}" for name in ("jobs", "good", "failed")}
    cwd = write_app(tmp_path, **urls)
    send_all(cwd, "jobs", [("Resize", {"image_id": 1, "width": 2}, None), ("Resize", {"image_id": 1}, 1),
                           ("Delete", {"image_id": 1}, None)])  # fmt: skip
    lines = '{"image_id": 1, "width": 2}\n'
    done = asyncsup(cwd, "send", "jobs", "Resize", "-", "-c", "app.toml", stdin=lines)
    assert done.returncode == 0, done.stderr
    _, seen = snapshot(urls["jobs"])
    assert [decode(data).version for _, data, _ in seen] == [2, 1, 1, 2]


@pytest.fixture
def bad_module(tmp_path: Path) -> Iterator[Path]:
    urls = {name: f"sqlite:///{tmp_path}/queue.db?queue={name}" for name in ("jobs", "good", "failed")}
    cwd = write_app(tmp_path, **urls)
    (cwd / "check_handlers.py").write_text("import no_such_dependency\n")
    yield cwd


def test_bad_config_exits_2(tmp_path: Path, bad_module: Path) -> None:
    no_config = asyncsup(tmp_path, "queue", "check")
    assert no_config.returncode == 2 and "queue check needs the config file" in no_config.stderr
    typo = asyncsup(bad_module, "queue", "check", "jbos", "-c", "app.toml")
    assert typo.returncode == 2 and "no transport named 'jbos' (did you mean 'jobs'?)" in typo.stderr
    broken = asyncsup(bad_module, "queue", "check", "-c", "app.toml")
    assert broken.returncode == 2
    assert "consumers.main.handlers: cannot import handler module 'check_handlers'" in broken.stderr


def test_send_says_how_to_do_without_handler_modules_that_do_not_import(bad_module: Path) -> None:
    refused = asyncsup(bad_module, "send", "jobs", "Resize", '{"image_id": 1}', "-c", "app.toml")
    assert refused.returncode == 2 and "or pass --message-version N" in refused.stderr
    sent = asyncsup(bad_module, "send", "jobs", "Resize", '{"image_id": 1}', "-c", "app.toml",
                    "--message-version", "2")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
