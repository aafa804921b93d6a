"""The peers' venvs for benchmarks/redis_peers.py: one per peer under benchmarks/.cache/redis-peers/.

A venv is made and filled from PyPI on first use, and reused while its ``requirements.txt`` (the
pinned list below) is unchanged; a peer that does not install is a RunFailed with pip's reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from _redis_workers import RunFailed, progress

CACHE = Path(__file__).resolve().parent / ".cache" / "redis-peers"
PEERS = {  # pinned: what was measured; bump deliberately
    "taskiq": ("taskiq==0.13.0", "taskiq-redis==1.2.4", "uvloop", "hiredis"),
    "arq": ("arq==0.28.0", "uvloop", "hiredis"),
    "dramatiq": ("dramatiq[redis]==2.2.1", "hiredis"),
    "celery": ("celery[redis]==5.7.0", "hiredis"),
}
DISTRIBUTIONS = ("asyncsup", "taskiq", "taskiq-redis", "arq", "dramatiq", "celery", "kombu", "redis",
                 "hiredis", "uvloop")  # fmt: skip


def ensure_venv(system: str) -> tuple[str, dict[str, str]]:
    """(the venv's bin folder, installed versions); installs on first use. Raises RunFailed."""
    if system == "asyncsup":
        return str(Path(sys.executable).parent), versions(sys.executable)
    venv, wanted = CACHE / system, "\n".join(PEERS[system])
    marker = venv / "requirements.txt"
    if not (marker.exists() and marker.read_text() == wanted):
        progress(f"installing {system} into {venv} ({', '.join(PEERS[system])})")
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}", 120)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *PEERS[system]]
        _run(pip, f"pip install {' '.join(PEERS[system])}", 600)
        marker.write_text(wanted)
    return str(venv / "bin"), versions(str(venv / "bin" / "python"))


def _run(argv: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"{what}: no answer in {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
        raise RunFailed(f"{what} failed: {' | '.join(e[:160] for e in errors[-2:])}")


def versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        f"for name in {DISTRIBUTIONS!r}:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}  # type: ignore[no-any-return]


def symfony_status() -> str:
    """Why Symfony Messenger is not run here (it never is yet: see benchmarks/README.md)."""
    if shutil.which("php") is None:
        return "not run: php is not installed"
    packages = ("php-symfony-messenger", "php-symfony-redis-messenger", "php-redis")
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        return f"not run: Debian packages missing: {', '.join(missing)}"
    return "not run: php is installed, but this benchmark has no PHP consumer yet"
