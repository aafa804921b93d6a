"""asyncsup's Redis consumer against the Python peers and the raw redis-py ceiling, in one run.

    .venv/bin/python benchmarks/redis_peers.py [--quick] [--only asyncsup,taskiq,...] [--runs N]

Same Redis, same run, a DB of our own (default 9, emptied before each case and at the end), a no-op
handler, 20,000 messages enqueued before the worker starts, one worker process:

- asyncsup: ``asyncsup consume --handlers asyncsup_noop redis://...`` with default settings, and
  with ``--prefetch 500``; messages sent with ``asyncsup.send_batch`` (timed: the publish rate);
- raw redis-py ceiling (benchmarks/redis_transport.py's ``raw``): XREADGROUP COUNT 500 + pipelined
  XACK, nothing per message; also with XDEL, which asyncsup does too; and pipelined XADD;
- the peers, each from PyPI in its own venv under benchmarks/.cache/redis-peers/ (installed on the
  first run, reused after): taskiq + taskiq-redis (streams), arq, dramatiq, celery (solo pool);
- Symfony Messenger only if php and its Debian packages are there (otherwise: the reference figure);
- asyncsup with 1, 2 and 4 ``asyncsup consume`` processes on one stream (total msg/s).

Consume rate = messages / (first message handled -> last message handled), as each worker's probe
saw it (redis_peer_apps/probe.py): the worker's boot (imports, connecting) is reported apart, as
"boot s". CPU is the handling process's own over that window; RSS is its peak (VmHWM), and for
workers made of several processes the sum over them too. Median of 3 runs (1 with --quick); ratios
are medians of per-run ratios. Progress goes to stderr, the table to stdout and to
benchmarks/results/redis_peers.md (raw figures in redis_peers.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _redis_peers_report as report
import redis
from _redis_venvs import ensure_venv, symfony_status
from _redis_workers import Barrier, Inbox, RunFailed, Worker, child_env, enqueue, progress

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OWNER_KEY = "asyncsup-bench:redis-peers:owner"  # marks the DB as ours, so a rerun may empty it


@dataclass(frozen=True)
class Case:
    name: str
    system: str  # the venv: "asyncsup" is the project's .venv, the others _redis_venvs.py's
    app: str  # the module in redis_peer_apps/
    config: str  # how it is configured, for the table
    argv: tuple[str, ...]  # the worker command; argv[0] is looked up in the venv's bin/


ASYNCSUP_ARGV = ("python", "-m", "asyncsup", "consume", "--handlers", "asyncsup_noop")
CASES = (
    Case("asyncsup", "asyncsup", "asyncsup_noop", "`asyncsup consume`, defaults (prefetch auto)",
         (*ASYNCSUP_ARGV, "{url}")),
    Case("asyncsup-prefetch500", "asyncsup", "asyncsup_noop", "`asyncsup consume --prefetch 500`",
         (*ASYNCSUP_ARGV, "--prefetch", "500", "{url}")),
    Case("taskiq", "taskiq", "taskiq_app", "RedisStreamBroker, `--workers 1`, max-async-tasks 100, uvloop",
         ("taskiq", "worker", "taskiq_app:broker", "--workers", "1", "--log-level", "WARNING")),
    Case("arq", "arq", "arq_app", "max_jobs 100, poll_delay 10 ms, uvloop, job logs off",
         ("arq", "arq_app.WorkerSettings", "--custom-log-dict", "arq_app.QUIET_LOGS")),
    Case("dramatiq", "dramatiq", "dramatiq_app", "RedisBroker, `--processes 1 --threads 8`",
         ("dramatiq", "dramatiq_app", "--processes", "1", "--threads", "8")),
    Case("celery", "celery", "celery_app", "Redis broker, `--pool solo`, no result backend",
         ("celery", "-A", "celery_app", "worker", "--pool", "solo", "--loglevel", "WARNING")),
)  # fmt: skip
SCALE = (1, 2, 4)


# --- one measurement -----------------------------------------------------------------------------


def redis_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the Redis server has used (all its clients: other users of it count too)."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Bench:
    """The run's shared parts: Redis (our DB), the report socket, the temp folder, the settings."""

    def __init__(self, url: str, folder: Path, n: int, timeout: float) -> None:
        self.url, self.folder, self.n, self.timeout = url, folder, n, timeout
        self.client = redis.Redis.from_url(url)
        self.inbox = Inbox(folder)
        self.workers: list[Worker] = []  # every worker ever started, for the final cleanup

    def __repr__(self) -> str:
        return f"<Bench on {self.url}, {self.n} messages, {len(self.workers)} workers started>"

    def claim_db(self, force: bool) -> None:
        """Refuse a DB holding someone else's keys; then mark it as ours and empty it."""
        try:
            size = self.client.dbsize()
        except redis.RedisError as exc:
            raise SystemExit(f"no Redis at {self.url}: {exc}") from None
        if size and not self.client.exists(OWNER_KEY) and not force:
            raise SystemExit(f"{self.url} holds {size} keys that are not ours: pick an empty DB with "
                             "--redis redis://127.0.0.1:6379/N, or pass --force-db to empty it")  # fmt: skip
        self.reset_db()

    def reset_db(self) -> None:
        self.client.flushdb()
        self.client.set(OWNER_KEY, "1")

    def env(self, stream: str, **extra: str) -> dict[str, str]:
        return child_env({"BENCH_REDIS_URL": self.url, "BENCH_STREAM": stream} | extra)

    def start(self, case: Case, bin_dir: str, env: dict[str, str], tag: str) -> Worker:
        url = f"{self.url}?stream={env['BENCH_STREAM']}&group=bench"
        argv = [str(Path(bin_dir) / case.argv[0]), *(a.replace("{url}", url) for a in case.argv[1:])]
        worker = Worker(argv, env, self.folder / f"{case.name}-{tag}.log")
        self.workers.append(worker)
        worker.start()
        return worker

    def consume(self, case: Case, bin_dir: str) -> dict[str, Any]:
        """Enqueue n, start one worker, wait for its probe's report of the n-th message, stop it."""
        self.reset_db()
        env = self.env(f"bench-{case.name}")
        enqueue_s = enqueue(str(Path(bin_dir) / "python"), case.app, self.n, env, self.timeout)
        self.inbox.drain()
        env |= {"BENCH_REPORT": self.inbox.path, "BENCH_EXPECT": str(self.n)}
        redis_cpu_s = redis_cpu(self.client)
        worker = self.start(case, bin_dir, env, "single")
        try:
            last = self.inbox.wait(f"report of message {self.n}", lambda r: r.event == "expected",
                                   self.timeout, [worker])  # fmt: skip
            tree_rss = worker.tree_peak_rss_mb()
            redis_cpu_s = redis_cpu(self.client) - redis_cpu_s
        except RunFailed as exc:
            raise RunFailed(f"{exc}; {self.backlog()}; log: {worker.log_tail()}") from None
        finally:
            worker.stop(timeout=10.0)
        window = last.last - last.first
        return {
            "consume_rate": (last.handled - 1) / window,
            "cpu_us": last.cpu_s / last.handled * 1e6,
            "redis_cpu_us": redis_cpu_s / self.n * 1e6,
            "rss_mb": last.maxrss_mb,
            "tree_rss_mb": tree_rss,
            "boot_s": last.first - worker.started,
            "enqueue_rate": self.n / enqueue_s,
            "stop": worker.stop_outcome,
            "stop_s": worker.stop_s,
        }

    def consume_scaled(self, processes: int, n: int, bin_dir: str) -> dict[str, Any]:
        """n messages, ``processes`` asyncsup consumers started together (a barrier at the first message)."""
        case = CASES[1]  # --prefetch 500
        self.reset_db()
        stream = f"bench-scale{processes}"
        env = self.env(stream)
        enqueue(str(Path(bin_dir) / "python"), case.app, n, env, self.timeout)
        self.inbox.drain()
        barrier = Barrier(self.folder)
        env |= {"BENCH_REPORT": self.inbox.path, "BENCH_LAST": str(n - 1), "BENCH_BARRIER": barrier.path}
        workers = [self.start(case, bin_dir, env, f"scale{processes}-{i}") for i in range(processes)]
        try:
            ready = {self.inbox.wait("worker ready", lambda r: r.event == "ready", self.timeout, workers).pid
                     for _ in workers}  # fmt: skip
            if len(ready) != processes:
                raise RunFailed(f"{len(ready)} distinct processes of {processes} took a first message")
            redis_cpu_s = redis_cpu(self.client)
            barrier.release()
            self.inbox.wait("last message", lambda r: r.event == "last-seq", self.timeout, workers)
            self.wait_drained(stream)
            redis_cpu_s = redis_cpu(self.client) - redis_cpu_s
            for worker in workers:
                worker.terminate()  # each probe reports at exit: its count, first and last message
            exits = [self.inbox.wait("exit report", lambda r: r.event == "exit" and r.handled > 0, 30.0)
                     for _ in workers]  # fmt: skip
        finally:
            barrier.release()
            for worker in workers:
                worker.wait_stopped(timeout=10.0)
        handled = sum(r.handled for r in exits)
        if handled != n:
            raise RunFailed(f"{processes} processes handled {handled} of {n} messages")
        window = max(r.last for r in exits) - min(r.first for r in exits)
        return {
            "consume_rate": (handled - 1) / window,
            "cpu_us": sum(r.cpu_s for r in exits) / handled * 1e6,  # first message -> exit, all processes
            "redis_cpu_us": redis_cpu_s / handled * 1e6,
            "per_process": sorted(r.handled for r in exits),
        }

    def backlog(self) -> str:
        """What is left in Redis, for an error message (the keys depend on the system)."""
        sizes = {}
        for key in self.client.scan_iter(count=1000):
            kind = self.client.type(key).decode()
            size = {"stream": self.client.xlen, "list": self.client.llen, "zset": self.client.zcard}.get(kind)
            if size is not None:
                sizes[key.decode()] = size(key)
        return "left in Redis: " + ", ".join(f"{k} ({v})" for k, v in sorted(sizes.items()))

    def wait_drained(self, stream: str) -> None:
        """Wait until every entry is acked (and deleted: asyncsup XDELs what it acks).

        Redis has no event for "a group's pending list is empty", so this polls; it runs only after
        the last message was handled, to let the other processes finish what they hold.
        """
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(stream)
            pipe.xpending(stream, "bench")
            length, pending = pipe.execute()
            if length == 0 and pending["pending"] == 0:
                return
            time.sleep(0.005)
        raise RunFailed(f"stream {stream} still had entries 60 s after its last message was handled")

    def raw(self, xdel: bool) -> dict[str, Any]:
        """redis_transport.raw() in a process of its own: (pipelined XADD, XREADGROUP + XACK)."""
        self.reset_db()
        argv = [sys.executable, str(Path(__file__)), "--child-raw", self.url, str(self.n), str(int(xdel))]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise RunFailed(f"raw redis-py failed: {' | '.join(done.stderr.strip().splitlines()[-3:])}")
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        with contextlib.suppress(redis.RedisError):
            self.client.flushdb()
        self.client.close()
        self.inbox.close()


def child_raw(url: str, n: int, xdel: bool) -> None:
    import resource

    from redis_transport import raw, run

    client = redis.Redis.from_url(url)
    samples = [redis_cpu(client)]
    lap = lambda: samples.append(redis_cpu(client))  # noqa: E731
    published, consumed = run(raw(url, "bench-raw", n, 500, xdel, lap))
    print(json.dumps({
        "publish_rate": published.rate, "publish_cpu_us": published.cpu,
        "publish_redis_cpu_us": (samples[1] - samples[0]) / n * 1e6,
        "consume_rate": consumed.rate, "cpu_us": consumed.cpu,
        "redis_cpu_us": (samples[2] - samples[1]) / n * 1e6,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


# --- the run -------------------------------------------------------------------------------------


def one_run(bench: Bench, cases: list[Case], bins: dict[str, str], scale: int, turn: int) -> dict[str, Any]:
    """Every selected case once, in an order rotated by ``turn`` (no case always goes first)."""
    out: dict[str, Any] = {}
    steps: list[tuple[str, Any]] = [(c.name, lambda c=c: bench.consume(c, bins[c.system])) for c in cases]
    steps += [("raw", lambda: bench.raw(xdel=False)), ("raw-xdel", lambda: bench.raw(xdel=True))]
    if scale:
        steps += [(f"scale-{k}", lambda k=k: bench.consume_scaled(k, scale, bins["asyncsup"])) for k in SCALE]
    shift = turn % len(steps)
    for name, step in steps[shift:] + steps[:shift]:
        try:
            out[name] = step()
        except RunFailed as exc:
            out[name] = {"error": str(exc)}
        progress(f"  {name:22} {report.one_line(out[name])}")
    return out


def prepare(cases: list[Case]) -> tuple[dict[str, str], dict[str, Any]]:
    """(bin folder per system, {system: versions or {"error": why}}); a peer that fails is noted."""
    bins: dict[str, str] = {}
    notes: dict[str, Any] = {}
    for system in dict.fromkeys(["asyncsup", *(c.system for c in cases)]):  # asyncsup: the raw rows
        try:
            bins[system], notes[system] = ensure_venv(system)
        except RunFailed as exc:
            notes[system] = {"error": f"install failed: {exc}"}
            progress(f"{system}: {exc}")
    return bins, notes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 run instead of 3")
    parser.add_argument("--runs", type=int, help="runs (default 3, 1 with --quick)")
    parser.add_argument("--only", help=f"comma-separated cases of: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1/2/4-process curve")
    parser.add_argument("--scale-messages", type=int, default=60_000, help="messages for the curve")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a DB of our own")
    parser.add_argument("--force-db", action="store_true", help="empty the DB even if it is not ours")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument("--child-raw", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args()


def selected(only: str | None) -> list[Case]:
    if not only:
        return list(CASES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = set(names) - {c.name for c in CASES}
    if unknown:
        raise SystemExit(
            f"--only: unknown {', '.join(sorted(unknown))} (known: {', '.join(c.name for c in CASES)})"
        )
    return [c for c in CASES if c.name in names]


def interrupt_on_term() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup in main() runs."""

    def interrupt(signo: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signo).name)

    for signo in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, interrupt)


def ignore_interrupts() -> None:
    """A second Ctrl-C must not cut the cleanup short (it would leave workers running)."""
    for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, signal.SIG_IGN)


def main() -> int:
    args = parse_args()
    if args.child_raw:
        child_raw(args.child_raw[0], int(args.child_raw[1]), args.child_raw[2] == "1")
        return 0
    cases = selected(args.only)
    runs = args.runs or (1 if args.quick else 3)
    # The curve's windows are short (20,000 messages: 0.2-0.3 s), so it gets more messages, for less noise.
    scale = 0 if args.no_scale or all(c.system != "asyncsup" for c in cases) else args.scale_messages
    timeout = max(60.0, args.messages / 200)  # the slowest peer measured here runs ~800 msg/s
    interrupt_on_term()
    with tempfile.TemporaryDirectory(prefix="asyncsup-redis-peers-") as tmp:
        bench = Bench(args.redis, Path(tmp), args.messages, timeout)
        try:
            bench.claim_db(args.force_db)
            bins, notes = prepare(cases)
            notes["symfony"] = {"error": symfony_status()}
            runnable = [c for c in cases if c.system in bins]
            rounds = []
            for turn in range(runs):
                progress(f"run {turn + 1}/{runs}")
                rounds.append(one_run(bench, runnable, bins, scale, turn))
        except KeyboardInterrupt:
            progress("interrupted: stopping every worker started")
            return 130
        finally:
            ignore_interrupts()
            bench.close()
    text = report.render(rounds, cases, notes, args.messages, args.redis, scale)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "redis_peers.md").write_text(text + "\n")
        (RESULTS / "redis_peers.json").write_text(
            json.dumps({"notes": notes, "runs": rounds}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
