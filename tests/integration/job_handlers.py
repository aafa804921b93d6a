"""A handler module that the deploy tests write into a config's folder, as a user writes theirs.

Its "Job" handler prints `v<VERSION> started <n>` and `v<VERSION> done <n>`, sleeps body["sleep"]
seconds (0.2 by default) in between, and records (n, VERSION, pid) in handled.db. So a test counts
what was handled, by which version of the code and by which process: none lost, none handled twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

TEMPLATE = """
import os
import sqlite3
import sys

import anyio

from asyncsup import handler

VERSION = {version}


@handler("Job")
async def job(body: dict) -> None:
    sys.stdout.write(f"v{{VERSION}} started {{body['n']}}\\n")
    sys.stdout.flush()
    await anyio.sleep(body.get("sleep", 0.2))
    with sqlite3.connect({db!r}, timeout=30) as db:
        db.execute("CREATE TABLE IF NOT EXISTS handled (n INTEGER, version INTEGER, pid INTEGER)")
        db.execute("INSERT INTO handled VALUES (?, ?, ?)", (body["n"], VERSION, os.getpid()))
    sys.stdout.write(f"v{{VERSION}} done {{body['n']}}\\n")
    sys.stdout.flush()
"""


def write(folder: Path, module: str, version: int) -> None:
    """`folder/module.py` at this VERSION (same size for every digit: a stale .pyc cannot hide it)."""
    (folder / f"{module}.py").write_text(TEMPLATE.format(version=version, db=str(folder / "handled.db")))


def handled(folder: Path) -> list[tuple[int, int, int]]:
    """(n, version, pid) of every message handled, by n."""
    with sqlite3.connect(folder / "handled.db") as db:
        return sorted(db.execute("SELECT n, version, pid FROM handled").fetchall())
