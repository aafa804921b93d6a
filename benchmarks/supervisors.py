"""asyncsup against supervisord 4.3.0 and circus 0.19.0, side by side, in one run.

    .venv/bin/python benchmarks/supervisors.py [--quick] [--only asyncsup,supervisord]

Every measure runs for every supervisor in the same run (the order rotates between runs),
the median of the runs is reported, with ratios against supervisord (and circus). Progress
goes to stderr, the table to stdout, and a full run also writes benchmarks/results/. See
benchmarks/README.md for what each measure means.
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _sup_measures
import _sup_report
from _sup_drivers import DEFAULT, DRIVERS, Asyncsup, Driver
from _sup_procfs import BenchTimeout
from _sup_session import become_subreaper, kill_everything_we_started

RESULTS = Path(__file__).resolve().parent / "results"
MEASURES = ("fleet", "cold", "relay", "thousand")

Results = dict[str, dict[str, list[float | None]]]
Figures = dict[str, object]
Step = Callable[[Driver, Figures], None]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 run, fewer kills, shorter idle window")
    p.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma list of {', '.join(DRIVERS)} (default: {', '.join(DEFAULT)})",
    )
    p.add_argument("--measures", default=",".join(MEASURES), help="comma list of " + str(MEASURES))
    p.add_argument(
        "--asyncsup",
        choices=("head", "worktree"),
        default="head",
        help="run asyncsup/ as committed at HEAD (a snapshot, default) or the working tree",
    )
    p.add_argument("--runs", type=int, help="runs per measure (default 3, 1 with --quick)")
    p.add_argument("--cold", type=int, help="extra cold starts of 100 per run (default 3, 1 with --quick)")
    p.add_argument("--relay-mb", type=int, default=1000, help="MB written by the relay child")
    p.add_argument("--seed", type=int, default=1, help="seed for kill victims and pauses")
    p.add_argument("--save", action="store_true", help="write results/ even for a partial run")
    p.add_argument("--no-save", action="store_true", help="never write results/")
    args = p.parse_args(argv)
    args.only = [n for n in args.only.split(",") if n]
    args.measures = [m for m in args.measures.split(",") if m]
    unknown = sorted(set(args.only) - set(DRIVERS)) + sorted(set(args.measures) - set(MEASURES))
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    args.runs = args.runs or (1 if args.quick else 3)
    args.cold = args.cold if args.cold is not None else (1 if args.quick else 3)
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, Step]]:
    """(measure name, function of a driver) in run order; each returns its named figures."""
    rng = random.Random(args.seed)
    kills = 5 if args.quick else 10
    idle = 8.0 if args.quick else 15.0
    total = args.relay_mb * 1_000_000
    fleet = _sup_measures.FleetOptions(children=100, kills=kills, idle_seconds=idle)
    big = _sup_measures.FleetOptions(children=1000, kills=3, measure_idle=False)
    steps: dict[str, list[tuple[str, Step]]] = {
        "fleet": [("fleet", lambda d, out: _sup_measures.fleet(d, fleet, rng, say, out))],
        "cold": [("cold", lambda d, out: _sup_measures.cold(d, 100, say, out))] * args.cold,
        "relay": [
            ("relay_file", lambda d, out: _sup_measures.relay(d, True, total, say, out)),
            ("relay_stdout", lambda d, out: _sup_measures.relay(d, False, total, say, out)),
            ("relay_raw", lambda d, out: _sup_measures.relay(d, False, total, say, out, labelled=False)),
        ],
        "thousand": [("thousand", lambda d, out: _sup_measures.fleet(d, big, rng, say, out))],
    }
    return [step for m in args.measures for step in steps[m]]


# Which figure of which step lands in which row of the table.
ROWS = {
    "fleet": {
        "cold_start_s": "cold_100",
        "restart_s": "restart_100",
        "idle_cpu_pct": "idle_cpu_100",
        "rss_mb": "rss_100",
        "pss_mb": "pss_100",
        "shim_rss_mb": "shim_rss_100",
        "shim_pss_mb": "shim_pss_100",
        "stop_s": "stop_100",
    },
    "cold": {"cold_start_s": "cold_100"},  # more samples of the fleet's figure
    "relay_file": {"mb_per_s": "relay_file_mbps", "cpu_s_per_100mb": "relay_file_cpu"},
    "relay_stdout": {"mb_per_s": "relay_stdout_mbps", "cpu_s_per_100mb": "relay_stdout_cpu"},
    "relay_raw": {"mb_per_s": "relay_raw_mbps", "cpu_s_per_100mb": "relay_raw_cpu"},
    "thousand": {
        "cold_start_s": "cold_1000",
        "restart_s": "restart_1000",
        "stop_s": "stop_1000",
        "rss_mb": "rss_1000",
    },
}


def run_all(args: argparse.Namespace, drivers: list[Driver]) -> tuple[Results, dict[str, object]]:
    results: Results = {d.name: {} for d in drivers}
    raw: dict[str, list[dict[str, object]]] = {d.name: [] for d in drivers}
    errors: dict[str, list[str]] = {d.name: [] for d in drivers}
    steps = plan(args)
    for run in range(args.runs):
        order = drivers[run % len(drivers) :] + drivers[: run % len(drivers)]
        for step, fn in steps:
            for d in order:
                say(f"run {run + 1}/{args.runs} {step}: {d.name}")
                figures: Figures = {}
                _one(d, fn, figures, errors[d.name])
                raw[d.name].append({"run": run, "step": step, **figures})
                for field, row in ROWS[step].items():
                    value = figures.get(field)
                    results[d.name].setdefault(row, []).append(value)  # type: ignore[arg-type]
    return results, {"raw": raw, "errors": errors}


def _one(d: Driver, fn: Step, figures: Figures, errors: list[str]) -> None:
    try:
        fn(d, figures)
    except Exception as exc:  # one supervisor failing one measure must not end the run
        errors.append(f"{type(exc).__name__}: {exc}")
        say(f"  FAILED: {type(exc).__name__}: {exc}")
        if not isinstance(exc, (RuntimeError, BenchTimeout)):
            traceback.print_exc(file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every Session's cleanup


def setup() -> None:
    # Also when started with SIGINT ignored (a `&` job of a script): Ctrl-C must clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    become_subreaper()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # 1,000 children hold 2-3 pipes each, in every supervisor
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setup()
    drivers = [DRIVERS[n]() for n in args.only]
    for d in drivers:
        if isinstance(d, Asyncsup):
            d.use_worktree = args.asyncsup == "worktree"
        d.prepare(say)
    started = time.perf_counter()
    try:
        results, extra = run_all(args, drivers)
    except KeyboardInterrupt:
        say("interrupted; everything started was killed")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        kill_everything_we_started(None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    names = [d.name for d in drivers]
    table = _sup_report.table(results, names)
    print(table)
    say(f"done in {time.perf_counter() - started:.0f} s")
    full = set(names) >= set(DEFAULT) and set(args.measures) == set(MEASURES)
    if args.save or (full and not args.no_save):
        meta = {
            "date": _sup_report.now_text(),
            "runs": args.runs,
            "quick": args.quick,
            "relay_mb": args.relay_mb,
            "machine": _sup_report.machine(),
            "sources": {d.name: d.source for d in drivers if d.source},
        }
        md = _sup_report.document(table, meta, extra["errors"])  # type: ignore[arg-type]
        data = {**meta, "medians_from": results, **extra}
        for path in _sup_report.save(RESULTS, "supervisors", md, data):
            say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
