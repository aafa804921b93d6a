"""The report of benchmarks/redis_peers.py: one markdown table of medians and ratios, and the goals.

Absolute figures are medians over the runs; every ratio is the median of the ratios taken within
each run (on 2 noisy shared cores, two figures from one run compare better than two medians).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

Run = dict[str, Any]
OURS = ("asyncsup", "asyncsup-prefetch500")
SYMFONY_REFERENCE = 2_900  # msg/s, 26 MB: shared/reference/SYMFONY.md (Symfony 5.4, PHP 8.2, this VM)
RAW_ROWS = (
    ("raw", "raw redis-py", "XREADGROUP COUNT 500 + pipelined XACK, nothing per message (the ceiling)"),
    ("raw-xdel", "raw redis-py + XDEL", "the same + XDEL of each batch (asyncsup deletes acked entries too)"),
)


def ok(run: Run, name: str) -> bool:
    return name in run and "error" not in run[name]


def median(rounds: Sequence[Run], name: str, key: str) -> float | None:
    values = [r[name][key] for r in rounds if ok(r, name) and key in r[name]]
    return statistics.median(values) if values else None


def ratio(
    rounds: Sequence[Run], a: str, b: str, key_a: str = "consume_rate", key_b: str = ""
) -> float | None:
    """Median over runs of a's figure / b's figure, from runs where both were measured."""
    values = [r[a][key_a] / r[b][key_b or key_a] for r in rounds if ok(r, a) and ok(r, b)]
    return statistics.median(values) if values else None


def errors(rounds: Sequence[Run], name: str) -> list[str]:
    return [r[name]["error"] for r in rounds if name in r and "error" in r[name]]


def one_line(result: dict[str, Any]) -> str:
    """A progress line for one case of one run."""
    if "error" in result:
        return f"FAILED: {result['error']}"
    if "per_process" in result:
        return f"{result['consume_rate']:>9,.0f} msg/s total, messages per process {result['per_process']}"
    text = f"{result['consume_rate']:>9,.0f} msg/s  CPU {result['cpu_us']:6.1f} µs/msg"
    text += f"  RSS {result['rss_mb']:5.1f} MB"
    if "publish_rate" in result:
        return text + f"  (publish {result['publish_rate']:,.0f} msg/s)"
    return (
        text + f"  boot {result['boot_s']:.2f} s  enqueue {result['enqueue_rate']:,.0f}/s  {result['stop']}"
    )


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def _x(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}x" if value >= 10 else f"{value:.2f}x"


def _failed(rounds: Sequence[Run], name: str) -> str:
    found = errors(rounds, name)
    if not found:
        return ""
    return f" ({len(found)} of {len(rounds)} runs failed: {found[-1]})"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(rounds: Sequence[Run], name: str, key: str, fmt: str = ",.0f") -> str:
    return _num(median(rounds, name, key), fmt)


CONSUME_HEADER = (
    "system", "configuration", "consume msg/s", "CPU µs/msg", "Redis CPU µs/msg",
    "RSS MB (worker / all procs)", "boot s", "enqueue msg/s", "on SIGTERM", "asyncsup ÷ it",
    "asyncsup prefetch 500 ÷ it",
)  # fmt: skip


def consume_table(rounds: Sequence[Run], cases: Sequence[Any], notes: dict[str, Any]) -> list[str]:
    lines = [_row(*CONSUME_HEADER), "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    lines += [_case_row(rounds, case, notes.get(case.system, {})) for case in cases]
    for name, label, config in RAW_ROWS:
        lines.append(_row(
            label, config + _failed(rounds, name), _cell(rounds, name, "consume_rate"),
            _cell(rounds, name, "cpu_us", ".2f"), _cell(rounds, name, "redis_cpu_us", ".1f"),
            _cell(rounds, name, "rss_mb", ".1f"), "—",
            _cell(rounds, name, "publish_rate"), "—", *(_x(ratio(rounds, ours, name)) for ours in OURS),
        ))  # fmt: skip
    symfony = notes.get("symfony", {}).get("error", "not run")
    lines.append(_row(
        "Symfony Messenger 5.4 (PHP 8.2)", f"`messenger:consume` on Redis: **{symfony}**; reference figures "
        "from SYMFONY.md, not measured in this run", f"({SYMFONY_REFERENCE:,})", "(169)", "—", "(26)", "—",
        "(10,374)", "—", "—", "—",
    ))  # fmt: skip
    return lines


def _case_row(rounds: Sequence[Run], case: Any, note: dict[str, Any]) -> str:
    name, empty = case.name, ["—"] * 9
    if "error" in note:
        return _row(name, f"{case.config}: **{note['error']}**", *empty)
    if median(rounds, name, "consume_rate") is None:
        return _row(name, f"{case.config}: **failed: {'; '.join(errors(rounds, name)[-1:])}**", *empty)
    rss = f"{_cell(rounds, name, 'rss_mb', '.1f')} / {_cell(rounds, name, 'tree_rss_mb', '.1f')}"
    stop = _stops(rounds, name)
    ratios = ["—", "—"] if name in OURS else [_x(ratio(rounds, ours, name)) for ours in OURS]
    return _row(
        f"{name} {note.get(case.system, '')}".strip(), case.config + _failed(rounds, name),
        _cell(rounds, name, "consume_rate"), _cell(rounds, name, "cpu_us", ".1f"),
        _cell(rounds, name, "redis_cpu_us", ".1f"), rss, _cell(rounds, name, "boot_s", ".2f"),
        _cell(rounds, name, "enqueue_rate"), stop, *ratios,
    )  # fmt: skip


def _stops(rounds: Sequence[Run], name: str) -> str:
    """How the worker took SIGTERM, per outcome: "2x exit 0 after SIGTERM (0.06 s); 1x killed: ..."."""
    outcomes: dict[str, list[float]] = {}
    for r in rounds:
        if ok(r, name):
            outcomes.setdefault(r[name]["stop"], []).append(r[name]["stop_s"])
    texts = []
    for outcome, seconds in sorted(outcomes.items(), key=lambda item: -len(item[1])):
        took = [s for s in seconds if s == s]  # NaN: it did not exit by itself
        texts.append(f"{len(seconds)}x {outcome}" + (f" ({statistics.median(took):.2f} s)" if took else ""))
    return "; ".join(texts)


SCALE_HEADER = (
    "`asyncsup consume --prefetch 500` processes", "total msg/s", "vs 1 process",
    "CPU µs/msg (all processes, first message -> exit)", "Redis CPU µs/msg",
    "cores busy (consumers + Redis)", "messages per process (last run)",
)  # fmt: skip


def scale_table(rounds: Sequence[Run], scale: Sequence[int]) -> list[str]:
    lines = [_row(*SCALE_HEADER), "|---:|---:|---:|---:|---:|---:|---|"]
    for k in scale:
        name = f"scale-{k}"
        split = next((r[name]["per_process"] for r in reversed(rounds) if ok(r, name)), None)
        lines.append(_row(
            str(k), _cell(rounds, name, "consume_rate") + _failed(rounds, name),
            _x(ratio(rounds, name, "scale-1")), _cell(rounds, name, "cpu_us", ".1f"),
            _cell(rounds, name, "redis_cpu_us", ".1f"), _num(_cores_busy(rounds, name), ".2f"),
            str(split or "—"),
        ))  # fmt: skip
    return lines


def _cores_busy(rounds: Sequence[Run], name: str) -> float | None:
    """CPU seconds per second of the window, consumers and Redis together: 2.0 is the whole machine."""
    values = [r[name]["consume_rate"] * (r[name]["cpu_us"] + r[name]["redis_cpu_us"]) / 1e6
              for r in rounds if ok(r, name)]  # fmt: skip
    return statistics.median(values) if values else None


def goals(rounds: Sequence[Run], cases: Sequence[Any], scale: int) -> list[str]:
    lines = ["Goals (issue 4):"]
    for ours in OURS:
        share = ratio(rounds, ours, "raw")
        if share is not None:
            lines.append(
                f"- {ours} consume >= 50% of raw XREADGROUP + XACK: {share:.0%} -> {_met(share >= 0.5)}"
            )
    peers = [c.name for c in cases if c.system != "asyncsup" and median(rounds, c.name, "consume_rate")]
    if peers:
        fastest = max(peers, key=lambda p: median(rounds, p, "consume_rate") or 0.0)
        best = max(OURS, key=lambda o: median(rounds, o, "consume_rate") or 0.0)
        times = ratio(rounds, best, fastest)
        lines.append(f"- {best} vs the fastest peer here ({fastest}): {_x(times)} (the issue hoped for ~70x)")
    sender = next((o for o in OURS if median(rounds, o, "enqueue_rate")), None)  # both enqueue the same way
    publish = ratio(rounds, sender, "raw", "enqueue_rate", "publish_rate") if sender else None
    if sender and publish is not None:
        ours, xadd = _cell(rounds, sender, "enqueue_rate"), _cell(rounds, "raw", "publish_rate")
        lines.append(f"- publish >= 50% of raw pipelined XADD: `send_batch` {ours} msg/s, XADD {xadd} msg/s: "
                     f"{publish:.0%} -> {_met(publish >= 0.5)}")  # fmt: skip
    four = ratio(rounds, "scale-4", "scale-1")
    two = ratio(rounds, "scale-2", "scale-1")
    if scale and four is not None and two is not None:
        scales = four >= 1.2 and two >= 1.0
        lines.append(f"- throughput scales from 1 to 4 processes (2 procs >= 1x and 4 procs >= 1.2x of 1): "
                     f"2 procs {_x(two)}, 4 procs {_x(four)} -> {_met(scales)}")  # fmt: skip
    return lines


def _met(value: bool) -> str:
    return "met" if value else "NOT met"


def render(
    rounds: Sequence[Run], cases: Sequence[Any], notes: dict[str, Any], n: int, url: str, scale: int
) -> str:
    """The whole report; ``scale`` is the curve's message count (0: no curve)."""
    ours = notes.get("asyncsup", {})
    head = [
        f"# Redis consumer: asyncsup vs the Python peers ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"{n:,} messages enqueued before the worker starts, no-op handler, one worker process, median of "
        f"{len(rounds)} run(s); Redis {url}, Python {platform.python_version()}, "
        f"redis-py {ours.get('redis', '?')}, hiredis {ours.get('hiredis', '?')}, "
        f"uvloop {ours.get('uvloop', '?')}, "
        f"{_cores()} cores (shared, noisy: ±20-30% on rates, compare the ratios).",
        "Consume msg/s = messages / (first -> last message handled); "
        "boot = worker launch -> first message handled.",
        "",
        "Versions: "
        + "; ".join(f"{system}: {_versions(v)}" for system, v in notes.items() if system != "symfony"),
        "",
    ]
    body = consume_table(rounds, cases, notes)
    if scale:
        body += ["", f"Scaling: {scale:,} messages, the processes started together (a barrier at their first "
                 "message), total msg/s = messages / (first -> last message over all processes).", "",
                 *scale_table(rounds, (1, 2, 4))]  # fmt: skip
    return "\n".join([*head, *body, "", *goals(rounds, cases, scale)])


def _versions(found: dict[str, Any]) -> str:
    if "error" in found:
        return str(found["error"])
    return ", ".join(f"{k} {v}" for k, v in found.items())


def _cores() -> int:
    import os

    return os.cpu_count() or 0
