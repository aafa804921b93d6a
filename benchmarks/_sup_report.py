"""Medians, ratios, goals, and the table (markdown, printed and saved with the raw json)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from _sup_drivers import REPO


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    digits: int = 3


METRICS = [
    Metric("cold_100", "cold start: launch -> 100 children exist", "s"),
    Metric("restart_100", "restart after kill -9 (median of kills)", "s"),
    Metric("idle_cpu_100", "idle CPU with 100 children", "%", digits=3),
    Metric("rss_100", "RSS with 100 children", "MB", digits=1),
    Metric("pss_100", "  PSS (shared pages split)", "MB", digits=1),
    Metric("shim_rss_100", "RSS of the PID-1 shim (only as PID 1)", "MB", digits=1),
    Metric("shim_pss_100", "  PSS of the PID-1 shim", "MB", digits=1),
    Metric("stop_100", "SIGTERM -> exited, 100 children", "s"),
    Metric("relay_file_mbps", "relay 100-byte lines to a rotating file", "MB/s", True, digits=0),
    Metric("relay_file_cpu", "  supervisor CPU per 100 MB (file)", "s", digits=2),
    Metric("relay_stdout_mbps", "relay 100-byte lines to stdout (pipe)", "MB/s", True, digits=0),
    Metric("relay_stdout_cpu", "  supervisor CPU per 100 MB (stdout)", "s", digits=2),
    Metric("relay_raw_mbps", "  same, unlabelled (asyncsup `prefix = false`)", "MB/s", True, digits=0),
    Metric("relay_raw_cpu", "  supervisor CPU per 100 MB (unlabelled)", "s", digits=2),
    Metric("cold_1000", "1,000 children: cold start", "s", digits=2),
    Metric("restart_1000", "1,000 children: restart after kill -9", "s"),
    Metric("stop_1000", "1,000 children: SIGTERM -> exited", "s", digits=2),
    Metric("rss_1000", "1,000 children: RSS", "MB", digits=1),
]

# (metric, peer, comparison, threshold) on the ratio asyncsup / peer.
GOALS = {
    "cold_100": ("supervisord", "<=", 0.2, ">= 5x faster than supervisord"),
    "restart_100": ("supervisord", "<=", 0.05, ">= 20x faster than supervisord"),
    "idle_cpu_100": ("supervisord", "<=", 1.0, "<= supervisord"),
    "rss_100": ("supervisord", "<=", 1.2, "<= 1.2x supervisord"),
    "stop_100": ("circus", "<", 1.0, "faster than circus"),
    "relay_file_mbps": ("supervisord", ">=", 1.0, ">= supervisord"),
    "relay_file_cpu": ("supervisord", "<", 1.0, "< supervisord"),
    "relay_stdout_mbps": ("supervisord", ">=", 1.0, ">= supervisord"),
    "relay_stdout_cpu": ("supervisord", "<", 1.0, "< supervisord"),
    "relay_raw_mbps": ("supervisord", ">=", 1.0, ">= supervisord"),
    "relay_raw_cpu": ("supervisord", "<", 1.0, "< supervisord"),
}

RATIOS = [
    ("circus", "supervisord"),
    ("asyncsup", "supervisord"),
    ("asyncsup", "circus"),
    ("asyncsup-asyncio", "supervisord"),
    ("asyncsup-pid1", "supervisord"),
]


def median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(got) if got else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def meets(value: float | None, op: str, threshold: float) -> str:
    if value is None:
        return "n/a"
    ok = {"<=": value <= threshold, "<": value < threshold, ">=": value >= threshold}[op]
    return "yes" if ok else "**no**"


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_ratio(value: float | None) -> str:
    """0.27, or 1/336 for a small ratio, which reads as "336 times less" without counting zeros."""
    if value is None:
        return "n/a"
    if 0 < value < 0.1:
        return f"1/{1 / value:.0f}"
    return f"{value:.2f}"


def table(runs: dict[str, dict[str, list[float | None]]], names: list[str]) -> str:
    """One markdown table: absolute medians per supervisor, ratios, goals."""
    pairs = [(a, b) for a, b in RATIOS if a in names and b in names]
    head = ["measure", "unit", *names, *(f"{a} / {b}" for a, b in pairs)]
    if "asyncsup" in names:
        head += ["goal for asyncsup", "met"]
    rows = [head, ["---"] * len(head)]
    for m in METRICS:
        medians = {n: median(runs.get(n, {}).get(m.key, [])) for n in names}
        if all(v is None for v in medians.values()):
            continue
        row = [m.label, m.unit, *(_fmt(medians[n], m.digits) for n in names)]
        row += [_fmt_ratio(ratio(medians[a], medians[b])) for a, b in pairs]
        if "asyncsup" in names:
            row += _goal_cells(m.key, medians)
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _goal_cells(key: str, medians: dict[str, float | None]) -> list[str]:
    if key not in GOALS:
        return ["", ""]
    peer, op, threshold, words = GOALS[key]
    if peer not in medians:
        return [words, "n/a"]
    return [words, meets(ratio(medians.get("asyncsup"), medians[peer]), op, threshold)]


def machine() -> dict[str, object]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "asyncsup_commit": _git("rev-parse", "--short", "HEAD"),
        "asyncsup_tree_dirty": bool(_git("status", "--porcelain", "--", "asyncsup")),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def document(table_md: str, meta: dict[str, object], errors: dict[str, list[str]]) -> str:
    info = meta["machine"]
    assert isinstance(info, dict)
    lines = [
        f"# Supervisor benchmark, {meta['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared, noisy), Linux {info['kernel']}, "
        f"Python {info['python']}; asyncsup: {_source(meta, info)}.",
        f"Median of {meta['runs']} run(s); each run measures every supervisor in turn; "
        f"the relay child writes {meta.get('relay_mb', 1000)} MB. "
        "Ratios are row value / column value, computed on the medians "
        "(for times and CPU lower is better, for MB/s higher is better).",
        "",
        table_md,
        "",
    ]
    for name, errs in errors.items():
        for err in errs:
            lines.append(f"- {name} error: {_summary(err)}")
    return "\n".join(lines) + "\n"


def _source(meta: dict[str, object], info: dict[str, object]) -> str:
    sources = meta.get("sources") or {}
    assert isinstance(sources, dict)
    source = sources.get("asyncsup", "the working tree")
    if source != "the working tree":
        return f"{source} (a snapshot of asyncsup/ at that commit)"
    dirty = " (with uncommitted changes in asyncsup/)" if info["asyncsup_tree_dirty"] else ""
    return f"the working tree at commit {info['asyncsup_commit']}{dirty}"


def _summary(error: str) -> str:
    """First line and, for a crash, the last line of the supervisor's output (the exception)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} ... {lines[-1]}"
    return lines[0] if lines else ""


def save(outdir: Path, stem: str, markdown: str, data: dict[str, object]) -> list[Path]:
    """Write both files through a .tmp so a Ctrl-C never leaves half a report."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".md", markdown), (".json", json.dumps(data, indent=1) + "\n")):
        path = outdir / (stem + suffix)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        written.append(path)
    return written


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
