"""Framing children's output into whole prefixed lines, and writing them to rotating files."""

from __future__ import annotations

import json
from pathlib import Path

from asyncsup.supervisor.output import MAX_LINE, Framer, RotatingFile


def feed_all(framer: Framer, chunks: list[bytes]) -> bytes:
    return b"".join(framer.feed(chunk) for chunk in chunks) + framer.flush()


def test_whole_lines_get_the_prefix() -> None:
    framer = Framer("web", "stdout", json_lines=False)
    assert framer.feed(b"one\ntwo\n") == b"web | one\nweb | two\n"


def test_a_line_cut_across_chunks_comes_out_once_whole() -> None:
    framer = Framer("web:0", "stdout", json_lines=False)
    assert framer.feed(b"hel") == b""
    assert framer.feed(b"lo\nwor") == b"web:0 | hello\n"
    assert framer.feed(b"ld") == b""
    assert framer.feed(b"\n") == b"web:0 | world\n"


def test_every_way_of_cutting_gives_the_same_lines() -> None:
    data = b"alpha\n\nbeta gamma\ndelta\n"
    expected = b"w | alpha\nw | \nw | beta gamma\nw | delta\n"
    for cut in range(len(data) + 1):
        framer = Framer("w", "stdout", json_lines=False)
        assert feed_all(framer, [data[:cut], data[cut:]]) == expected, cut
    framer = Framer("w", "stdout", json_lines=False)
    assert feed_all(framer, [bytes([b]) for b in data]) == expected


def test_flush_relays_a_last_line_without_newline() -> None:
    framer = Framer("web", "stdout", json_lines=False)
    assert framer.feed(b"done\nbye") == b"web | done\n"
    assert framer.flush() == b"web | bye\n"
    assert framer.flush() == b""


def test_flush_with_nothing_pending_writes_nothing() -> None:
    framer = Framer("web", "stdout", json_lines=False)
    framer.feed(b"x\n")
    assert framer.flush() == b""


def test_an_endless_line_is_cut_so_memory_stays_bounded() -> None:
    framer = Framer("web", "stdout", json_lines=False)
    out = framer.feed(b"y" * (MAX_LINE // 2))
    assert out == b""
    out = framer.feed(b"y" * MAX_LINE)
    assert out == b"web | " + b"y" * (MAX_LINE // 2 + MAX_LINE) + b"\n"
    assert framer.feed(b"tail\n") == b"web | tail\n"


def test_carriage_returns_and_invalid_utf8_pass_through_in_text_mode() -> None:
    framer = Framer("web", "stdout", json_lines=False)
    assert framer.feed(b"progress\r50%\xff\n") == b"web | progress\r50%\xff\n"


def test_json_lines_carry_process_stream_and_text() -> None:
    framer = Framer("web:1", "stderr", json_lines=True)
    out = framer.feed('bad "quote" \\ ünï\nsecond\npart'.encode())
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["line"] for r in records] == ['bad "quote" \\ ünï', "second"]
    assert all(r["process"] == "web:1" and r["stream"] == "stderr" for r in records)
    assert all(isinstance(r["ts"], float) for r in records)
    [last] = [json.loads(line) for line in framer.flush().decode().splitlines()]
    assert last["line"] == "part"


def test_json_lines_replace_invalid_utf8() -> None:
    framer = Framer("web", "stdout", json_lines=True)
    [record] = [json.loads(line) for line in framer.feed(b"a\xffb\n").decode().splitlines()]
    assert record["line"] == "a\ufffdb"


# -- RotatingFile ---------------------------------------------------------------------------------


def lines(n: int, width: int = 10) -> bytes:
    return b"".join(f"{i:0{width - 1}d}\n".encode() for i in range(n))


def read_all(path: Path, backups: int) -> list[bytes]:
    """Contents from the oldest backup to the current file."""
    files = [path.with_name(f"{path.name}.{n}") for n in range(backups, 0, -1)] + [path]
    return [f.read_bytes() for f in files if f.exists()]


def test_rotation_keeps_whole_lines_and_at_most_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "web.log"
    target = RotatingFile(path, max_bytes=100, backups=3)
    target.write(lines(25))  # 250 bytes in one write: the sink hands over big batches
    target.close()
    contents = read_all(path, 3)
    assert [len(c) for c in contents] == [100, 100, 50]
    assert b"".join(contents) == lines(25)
    assert all(c.endswith(b"\n") for c in contents)


def test_rotation_keeps_only_the_newest_backups(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    target = RotatingFile(path, max_bytes=20, backups=2)
    for i in range(10):
        target.write(f"line {i:03d}\n".encode())  # 9 bytes: two per file
    target.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.log", "web.log.1", "web.log.2"]
    assert b"".join(read_all(path, 2)) == b"".join(f"line {i:03d}\n".encode() for i in range(4, 10))


def test_zero_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    target = RotatingFile(path, max_bytes=20, backups=0)
    target.write(b"a" * 9 + b"\n" + b"b" * 9 + b"\n" + b"c" * 9 + b"\n")
    target.close()
    assert [p.name for p in tmp_path.iterdir()] == ["web.log"]
    assert path.read_bytes() == b"c" * 9 + b"\n"


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    target = RotatingFile(path, max_bytes=10, backups=5)
    target.write(b"short\n" + b"L" * 30 + b"\n" + b"end\n")
    target.close()
    assert read_all(path, 5) == [b"short\n", b"L" * 30 + b"\n", b"end\n"]


def test_no_rotation_when_max_bytes_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    target = RotatingFile(path, max_bytes=0, backups=5)
    target.write(lines(1000))
    target.close()
    assert [p.name for p in tmp_path.iterdir()] == ["web.log"]


def test_appending_to_a_file_that_still_has_room(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    path.write_bytes(b"old\n")
    target = RotatingFile(path, max_bytes=20, backups=1)
    target.write(b"new line\n")
    target.close()
    assert read_all(path, 1) == [b"old\nnew line\n"]


def test_appending_to_a_file_already_over_max_bytes_rotates_it_first(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    path.write_bytes(b"o" * 49 + b"\n")
    target = RotatingFile(path, max_bytes=20, backups=1)
    target.write(b"new line\n")
    target.close()
    assert read_all(path, 1) == [b"o" * 49 + b"\n", b"new line\n"]


# -- ready lines through PipeRelay ----------------------------------------------------------------


def offered_lines(chunks: list[bytes], pattern: str) -> tuple[list[str], int]:
    """The lines a relay offers to a ready matcher, and how many times it matched."""
    import asyncio
    import re

    from asyncsup.supervisor.output import PipeRelay, line_matcher

    seen: list[str] = []
    matches: list[None] = []

    async def main() -> None:
        check = line_matcher(re.compile(pattern), lambda: matches.append(None))

        def on_line(line: str) -> bool:
            seen.append(line)
            return check(line)

        relay = PipeRelay(Framer("w", "stdout", json_lines=False), None, on_line)
        for chunk in chunks:
            relay.data_received(chunk)

    asyncio.run(main())
    return seen, len(matches)


def test_a_ready_line_cut_across_reads_is_joined() -> None:
    seen, matched = offered_lines([b"boot\nlis", b"ten", b"ing\nmore\n"], "^listening$")
    assert matched == 1
    assert "listening" in seen and "lis" in seen  # the unfinished line is offered too


def test_an_unfinished_ready_line_matches_without_its_newline() -> None:
    _, matched = offered_lines([b"Ready> "], "^Ready>")
    assert matched == 1


def test_matching_stops_after_the_first_match() -> None:
    seen, matched = offered_lines([b"ready\n", b"ready\nready\n"], "ready")
    assert (seen, matched) == (["ready"], 1)
