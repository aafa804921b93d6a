"""The control plane's wire formats, without a socket: JSON lines, the Prometheus text, tail buffers,
where `asyncsup ctl` looks for the socket, and how results read on a terminal."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncsup.control import metrics, render
from asyncsup.control.address import default_socket, socket_for_file
from asyncsup.control.lag import BUCKETS, LoopLag
from asyncsup.control.metrics import Exposition, Snapshot, _number
from asyncsup.control.protocol import (
    BAD_REQUEST,
    UNSUPPORTED_VERSION,
    VERSION,
    Reply,
    decode_event,
    decode_reply,
    decode_request,
    encode_event,
    encode_reply,
    encode_request,
)
from asyncsup.errors import ConfigError, ControlError
from asyncsup.supervisor.tail import OutputTail

# -- JSON lines ---------------------------------------------------------------------------------------


def test_a_request_is_one_versioned_json_line() -> None:
    line = encode_request("status", {"names": ["web", "worker:*"]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"v": VERSION, "cmd": "status", "args": {"names": ["web", "worker:*"]}}
    request = decode_request(line)
    assert (request.cmd, dict(request.args)) == ("status", {"names": ["web", "worker:*"]})


def test_args_may_be_left_out() -> None:
    assert dict(decode_request(b'{"v": 1, "cmd": "pid"}').args) == {}


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (b"status\n", BAD_REQUEST, "not valid JSON"),
        (b"\xff\xfe\n", BAD_REQUEST, "not valid JSON"),
        (b"[1, 2]\n", BAD_REQUEST, "not a JSON object"),
        (b'{"cmd": "status"}\n', UNSUPPORTED_VERSION, "version None is not supported"),
        (b'{"v": 2, "cmd": "status"}\n', UNSUPPORTED_VERSION, "version 2 is not supported"),
        (b'{"v": "1", "cmd": "status"}\n', UNSUPPORTED_VERSION, "version '1'"),
        (b'{"v": 1}\n', BAD_REQUEST, 'no "cmd"'),
        (b'{"v": 1, "cmd": ""}\n', BAD_REQUEST, 'no "cmd"'),
        (b'{"v": 1, "cmd": "status", "args": ["web"]}\n', BAD_REQUEST, '"args" must be a JSON object'),
    ],
)
def test_a_bad_request_is_refused_with_a_code(line: bytes, code: str, words: str) -> None:
    with pytest.raises(ControlError) as caught:
        decode_request(line)
    assert caught.value.code == code
    assert words in str(caught.value)


def test_replies_round_trip() -> None:
    ok = decode_reply(encode_reply(Reply(ok=True, result={"pid": 7})))
    assert (ok.ok, ok.result, ok.more) == (True, {"pid": 7}, False)
    stream = decode_reply(encode_reply(Reply(ok=True, result={"data": "x"}, more=True)))
    assert stream.more is True
    error = ControlError("no program named 'x' (known: web)", "unknown_name")
    failed = decode_reply(encode_reply(Reply.failure(error)))
    assert (failed.ok, failed.code) == (False, "unknown_name")
    assert failed.error == "no program named 'x' (known: web)"
    assert json.loads(encode_reply(Reply.failure(error))) == {
        "ok": False, "error": "no program named 'x' (known: web)", "code": "unknown_name"
    }


def test_a_reply_that_is_not_ok_is_a_failure_even_without_fields() -> None:
    reply = decode_reply(b'{"ok": "yes"}\n')
    assert reply.ok is False and reply.error == "no error message"


def test_stream_events_carry_text_and_lost_bytes() -> None:
    assert decode_event(encode_event("é\nline\n", 12)) == ("é\nline\n", 12)
    assert decode_event(b'{"data": "x"}') == ("x", 0)
    with pytest.raises(ControlError):
        decode_event(b'{"data": 1}')


# -- Prometheus text -----------------------------------------------------------------------------------


def test_label_values_and_help_are_escaped() -> None:
    out = Exposition()
    out.family("x_total", "counter", 'a "help" with \\ and\nnewline', [({"name": 'we"b\\1\n'}, 3)])
    assert out.text().splitlines() == [
        '# HELP x_total a "help" with \\\\ and\\nnewline',
        "# TYPE x_total counter",
        'x_total{name="we\\"b\\\\1\\n"} 3',
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (2.0, "2"), (True, "1"), (0.25, "0.25"), (1e-05, "1e-05"), (math.inf, "+Inf"),
     (-math.inf, "-Inf"), (math.nan, "NaN"), (1795954655.7151577, "1795954655.7151577")],
)
def test_numbers_are_written_as_prometheus_reads_them(value: float, text: str) -> None:
    assert _number(value) == text


def test_the_lag_histogram_is_cumulative_and_ends_at_the_count() -> None:
    lag = LoopLag(threshold=100.0)
    for seconds in (0.0, 0.0004, 0.003, 0.003, 0.2, 30.0):
        lag.record(seconds)
    stats = lag.statistics()
    assert stats.count == 6 and stats.max == 30.0 and stats.last == 30.0
    assert list(stats.buckets) == sorted(stats.buckets)
    assert stats.buckets[BUCKETS.index(0.001)] == 2 and stats.buckets[BUCKETS.index(0.005)] == 4
    assert stats.buckets[-1] == 5  # 30 s is above the last bound: only in +Inf
    out = Exposition()
    out.histogram("lag_seconds", "lag", stats)
    lines = out.text().splitlines()
    assert 'lag_seconds_bucket{le="+Inf"} 6' in lines and "lag_seconds_count 6" in lines


def test_statistics_providers_become_one_family_per_field() -> None:
    """The hook for parts with numbers (a consumer): numeric fields of each statistics() dataclass."""

    @dataclass(frozen=True)
    class Stats:
        handled: int
        elapsed: float
        state: str  # not a number: not exported
        stopping: bool  # not a count either

    consumers = {"main": Stats(3, 1.5, "running", False), "bulk": Stats(0, 0.25, "idle", True)}
    snapshot = Snapshot([], LoopLag().statistics(), ready=True, shutting_down=False,
                        statistics={"consumer": consumers})
    text = metrics.render(snapshot).splitlines()
    assert "# TYPE asyncsup_consumer_handled gauge" in text
    assert 'asyncsup_consumer_handled{consumer="main"} 3' in text
    assert 'asyncsup_consumer_elapsed{consumer="bulk"} 0.25' in text
    assert not [line for line in text if "consumer_state" in line or "consumer_stopping" in line]
    assert text.count("# TYPE asyncsup_consumer_handled gauge") == 1


# -- the tail buffer ---------------------------------------------------------------------------------


def test_tail_keeps_the_last_lines() -> None:
    tail = OutputTail(capacity=64)
    tail.feed(b"one\ntwo\nthr")
    tail.feed(b"ee\nfour")
    assert tail.lines(2) == b"three\nfour"
    assert tail.lines(10) == b"one\ntwo\nthree\nfour"
    assert tail.lines(0) == b""


def test_tail_is_bounded_and_drops_the_partial_first_line() -> None:
    tail = OutputTail(capacity=100)
    for n in range(1000):
        tail.feed(b"line %04d\n" % n)
    kept = tail.lines(1000)
    assert len(kept) <= 100 and kept.endswith(b"line 0999\n")
    assert all(line.startswith(b"line ") and len(line) == 9 for line in kept.splitlines())
    assert tail.total == 10_000


@pytest.mark.anyio
async def test_a_slow_follower_loses_the_oldest_bytes_and_is_told() -> None:
    tail = OutputTail()
    with tail.follow() as follower:
        follower.limit = 10
        tail.feed(b"0123456789")
        tail.feed(b"abcde")
        assert await follower.receive() == (b"56789abcde", 5)
        tail.feed(b"x")
        assert await follower.receive() == (b"x", 0)
    tail.feed(b"after")  # no follower left: nothing queued anywhere
    assert "0 following" in repr(tail)


# -- where ctl looks for the socket ------------------------------------------------------------------


def test_the_default_socket_sits_next_to_the_config(tmp_path: Path) -> None:
    config = tmp_path / "asyncsup.toml"
    config.write_text('[programs.web]\ncommand = "sleep 1"\nenvironment = { A = "${NOT_SET_HERE}" }\n')
    assert socket_for_file(str(config)) == tmp_path / "asyncsup.sock"  # ${...} is not resolved by ctl
    assert default_socket(Path("/etc/app/prod.toml")) == Path("/etc/app/prod.sock")
    assert default_socket(Path("/etc/app/config")) == Path("/etc/app/config.sock")


def test_a_configured_socket_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "a.toml"
    config.parent.mkdir()
    config.write_text('[asyncsup]\ncontrol_socket = "../run/a.sock"\n')
    assert socket_for_file(str(config)) == tmp_path / "run" / "a.sock"
    config.write_text('[asyncsup]\ncontrol_socket = "/run/asyncsup.sock"\n')
    assert socket_for_file(str(config)) == Path("/run/asyncsup.sock")


def test_an_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        socket_for_file(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[asyncsup\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        socket_for_file(str(bad))
    bad.write_text("[asyncsup]\ncontrol_socket = 3\n")
    with pytest.raises(ConfigError, match="control_socket: expected a non-empty string"):
        socket_for_file(str(bad))


# -- terminal output ---------------------------------------------------------------------------------


def test_outcomes_read_like_supervisorctl() -> None:
    assert render.outcome_line({"name": "web", "done": "started", "error": ""}) == "web: started"
    assert render.outcome_line({"name": "web", "done": "", "error": "already started"}) == (
        "web: ERROR (already started)"
    )
    failed = {"name": "w:0", "done": "", "error": "abnormal termination", "detail": "exit 1"}
    assert render.outcome_line(failed) == "w:0: ERROR (abnormal termination: exit 1)"


def test_status_columns_line_up() -> None:
    result = {
        "processes": [
            {"name": "web", "state": "RUNNING", "pid": 42, "uptime": 62.5, "restarts": 1,
             "last_exit": "exit 1", "rss": 3 * 1024 * 1024, "cpu": 1.5},
            {"name": "worker:10", "state": "STOPPED", "pid": None, "uptime": None, "restarts": 0,
             "last_exit": None, "rss": None, "cpu": None},
        ],
        "statistics": {"consumer": {"main": {"handled": 3, "elapsed": 1.25}}},
        "ready": False,
        "why": "critical process web is STARTING",
    }
    lines = render.status_lines(result)
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT", "RSS", "CPU"]
    assert lines[1].split() == ["web", "RUNNING", "42", "0:01:02", "1", "exit", "1", "3.0M", "1.50s"]
    assert lines[2].split() == ["worker:10", "STOPPED", "-", "-", "0", "-", "-", "-"]
    assert {line.index("STATE") if "STATE" in line else line.index("RUNNING") for line in lines[:2]} == {11}
    assert lines[3] == "consumer main: handled 3, elapsed 1.25"
    assert lines[4] == "not ready: critical process web is STARTING"


@pytest.mark.parametrize(("n", "text"), [(0, "0B"), (1023, "1023B"), (1536, "1.5K"), (5 * 2**30, "5.0G")])
def test_sizes_are_short(n: int, text: str) -> None:
    assert render.size(n) == text


def test_durations_read_like_uptime() -> None:
    assert render.duration(3 * 86400 + 3723.9) == "3 days, 1:02:03"
    assert render.cpu(0.123) == "0.12s" and render.cpu(125) == "0:02:05"
