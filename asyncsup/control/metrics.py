"""/metrics in the Prometheus text format (version 0.0.4), written by hand.

Why not prometheus-client: every value here is read from live state at scrape time, so we would need a
custom collector anyway, and its default registry is module-level global state. The format is a few
lines of escaping; a dependency in the image of every container running asyncsup as PID 1 is not.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .._version import __version__
from ..supervisor.states import State
from .lag import BUCKETS, LagStatistics
from .status import CLOCK_TICKS, ProcessStatus, boot_time, read_usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]
Sample = tuple[Labels, float]


def _escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    """A HELP text: backslash and newline escaped (quotes are fine there)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class Exposition:
    """Collects metric families and renders them; one HELP and TYPE line per family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self._head(name, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, stats: LagStatistics) -> None:
        self._head(name, "histogram", help_text)
        for bound, count in zip(BUCKETS, stats.buckets, strict=True):
            self._lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
        self._lines.append(f'{name}_bucket{{le="+Inf"}} {stats.count}')
        self._lines.append(f"{name}_sum {_number(stats.total)}")
        self._lines.append(f"{name}_count {stats.count}")

    def histogram_family(
        self,
        name: str,
        help_text: str,
        bounds: Sequence[float],
        series: Iterable[tuple[Labels, Sequence[int], float]],  # labels, cumulative counts (+Inf last), sum
    ) -> None:
        self._head(name, "histogram", help_text)
        for labels, cumulative, total in series:
            for bound, count in zip([*map(_number, bounds), "+Inf"], cumulative, strict=True):
                self._lines.append(f"{name}_bucket{_labels({**labels, 'le': bound})} {count}")
            self._lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            self._lines.append(f"{name}_count{_labels(labels)} {cumulative[-1]}")

    def _head(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics shows, gathered by the control plane at scrape time."""

    processes: Sequence[ProcessStatus]
    lag: LagStatistics
    ready: bool
    shutting_down: bool
    statistics: Mapping[str, Mapping[str, object]]  # kind -> name -> a statistics() dataclass


def render(snapshot: Snapshot) -> str:
    out = Exposition()
    lag = snapshot.lag
    families: list[tuple[str, str, str, list[Sample]]] = [
        ("info", "gauge", "The asyncsup version.", [({"version": __version__}, 1)]),
        ("ready", "gauge", "1 while /readyz answers 200.", [({}, snapshot.ready)]),
        ("shutting_down", "gauge", "1 once shutdown was requested.", [({}, snapshot.shutting_down)]),
        ("event_loop_blocked_total", "counter", "Lags over the warning threshold.", [({}, lag.blocked)]),
    ]
    for name, kind, help_text, samples in families:
        out.family(f"asyncsup_{name}", kind, help_text, samples)
    _processes(out, snapshot.processes)
    out.histogram("asyncsup_event_loop_lag_seconds", "How late the watchdog's periodic timer fired.", lag)
    _own_process(out)
    _statistics(out, snapshot.statistics)
    return out.text()


def _processes(out: Exposition, processes: Sequence[ProcessStatus]) -> None:
    def each(field: str) -> list[Sample]:
        values = ((p, getattr(p, field)) for p in processes)
        return [({"program": p.program, "process": p.name}, v) for p, v in values if v is not None]

    states: list[Sample] = [
        ({"program": p.program, "process": p.name, "state": str(state)}, p.state == str(state))
        for p in processes
        for state in State
    ]
    for name, kind, help_text, samples in [
        ("state", "gauge", "1 for the state each process is in.", states),
        ("state_since_seconds", "gauge", "Unix time of the last state change.", each("since")),
        ("restarts_total", "counter", "Restarts by the restart policy.", each("restarts")),
        ("resident_memory_bytes", "gauge", "RSS of the process (not of its children).", each("rss")),
        ("cpu_seconds_total", "counter", "User and system CPU time of the process.", each("cpu")),
    ]:
        out.family(f"asyncsup_process_{name}", kind, help_text, samples)


def _own_process(out: Exposition) -> None:
    """The standard process_* metrics of asyncsup itself, named as prometheus-client names them."""
    usage = read_usage("self")
    if usage is None:
        return
    start = boot_time() + usage.start_ticks / CLOCK_TICKS
    for name, kind, help_text, value in [
        ("resident_memory_bytes", "gauge", "Resident memory size in bytes.", usage.rss),
        ("cpu_seconds_total", "counter", "Total user and system CPU time in seconds.", usage.cpu),
        ("start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start),
        ("open_fds", "gauge", "Number of open file descriptors.", len(os.listdir("/proc/self/fd"))),
    ]:
        out.family(f"process_{name}", kind, help_text, [({}, value)])


def _statistics(out: Exposition, statistics: Mapping[str, Mapping[str, object]]) -> None:
    """Numeric fields of each provider's statistics() dataclass, as asyncsup_<kind>_<field>{<kind>=name}."""
    families: dict[str, list[Sample]] = {}
    for kind, by_name in statistics.items():
        for name, stats in by_name.items():
            for key, value in _numbers(stats):
                families.setdefault(f"asyncsup_{kind}_{key}", []).append(({kind: name}, value))
    for family, samples in families.items():
        out.family(family, "gauge", f"{family.removeprefix('asyncsup_').replace('_', ' ')}.", samples)


def _numbers(stats: object) -> list[tuple[str, float]]:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        items = [(f.name, getattr(stats, f.name)) for f in dataclasses.fields(stats)]
    elif isinstance(stats, Mapping):
        items = list(stats.items())
    else:
        return []
    return [(str(k), float(v)) for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
