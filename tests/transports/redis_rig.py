"""The Redis the tests use: where it is, a skip (or, with CI=true, a failure) when it is not there,
a key prefix per test and the cleanup of those keys, and a private redis-server one can restart."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("ASYNCSUP_TEST_REDIS", "redis://127.0.0.1:6379/0")


@functools.cache
def _unavailable() -> str | None:
    """Why the tests cannot use Redis, or None when they can (asked once per test process)."""
    try:
        import redis
    except ImportError:
        return "the redis package is not installed (pip install 'asyncsup[redis]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"no Redis at {REDIS_URL}: {exc}"
    return None


def require_redis() -> None:
    """Skip the test without Redis; under CI=true a missing Redis is a failure, never a skip."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def new_prefix() -> str:
    """A key prefix no other test (or test run) uses."""
    return f"asyncsup-test:{os.getpid()}:{os.urandom(4).hex()}:"


@contextlib.contextmanager
def own_prefix() -> Iterator[str]:
    """A key prefix of the calling test's own (it skips without Redis); its keys go afterwards."""
    require_redis()
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        delete_keys(prefix)


def url(stream: str, url: str = REDIS_URL, **options: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"stream": stream, **options}.items())
    return f"{url}?{query}"


def delete_keys(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under the prefix (the tests' streams, delayed sets and marks)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own (AOF on, so a restart keeps what was acknowledged)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.process and self.process.poll() is None else "stopped"
        return f"<PrivateRedis :{self.port} {state}>"

    def start(self) -> None:
        """Start it and return once it accepts connections (it says so on stdout)."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends when the server exits: then the assert says why
            if b"Ready to accept connections" in line:
                return
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """SIGTERM: Redis flushes the AOF and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
            assert self.process.stdout is not None
            self.process.stdout.close()

    def restart(self) -> float:
        """Stop and start again on the same port; returns how long it was down."""
        down = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - down


def redis_server_installed() -> bool:
    return subprocess.run(["sh", "-c", "command -v redis-server"], capture_output=True).returncode == 0
