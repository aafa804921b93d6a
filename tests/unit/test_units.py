"""Durations and sizes: what parses, to what, what is refused and how it is said."""

from __future__ import annotations

import pytest

from asyncsup.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("2h30m", 9000.0),
        ("1m30s", 90.0),
        ("1h0m1s250ms", 3601.25),
        (".5s", 0.5),
        (" 10s ", 10.0),
        ("0", 0.0),
        ("0s", 0.0),
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "soon"'),
        ("30", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "30"'),
        ("", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got ""'),
        ("-1s", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "-1s"'),
        ("1 s", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "1 s"'),
        ("30s1m", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "30s1m"'),
        ("1s1s", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "1s1s"'),
        ("1d", 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got "1d"'),
        (-1, "expected a duration >= 0, got -1"),
        (float("inf"), "expected a duration >= 0, got inf"),
        (float("nan"), "expected a duration >= 0, got nan"),
        (True, 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got true'),
        ([1], 'expected a duration like "500ms", "30s", "1.5s" or "2h30m", got [1]'),
    ],
)
def test_parse_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("10B", 10),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("256M", 256 * 1024**2),
        ("1G", 1024**3),
        ("1KiB", 1024),
        ("50MiB", 50 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("1kB", 1000),
        ("1KB", 1000),
        ("256MB", 256_000_000),
        ("50mb", 50_000_000),
        ("1GB", 1_000_000_000),
        ("1TB", 1000**4),
        ("1.5KiB", 1536),
        ("1.5GB", 1_500_000_000),
        ("50 MB", 50_000_000),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("256XB", 'expected a size like "512k", "50MB" or "1GiB", got "256XB"'),
        ("lots", 'expected a size like "512k", "50MB" or "1GiB", got "lots"'),
        ("", 'expected a size like "512k", "50MB" or "1GiB", got ""'),
        ("-1MB", 'expected a size like "512k", "50MB" or "1GiB", got "-1MB"'),
        ("1.5B", 'expected a whole number of bytes, got "1.5B"'),
        ("0.1k", 'expected a whole number of bytes, got "0.1k"'),
        (-1, "expected a size >= 0, got -1"),
        (1.5, 'expected a size like "512k", "50MB" or "1GiB", got 1.5'),
        (False, 'expected a size like "512k", "50MB" or "1GiB", got false'),
    ],
)
def test_parse_size_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.001, "1ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (2.25, "2.25s"),
        (59.999, "59.999s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (9000, "2h30m"),
        (3601.25, "1h1.25s"),
        (86400, "24h"),
        (-90, "-1m30s"),
        (float("inf"), "forever"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, 0.25, 1, 1.5, 59.999, 61, 3599.5, 9000, 123456.789])
def test_format_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.0005)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1000, "1kB"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (50 * 1024**2, "50MiB"),
        (256_000_000, "256MB"),
        (1_024_000, "1000KiB"),
        (1023, "1023B"),
        (1024**3, "1GiB"),
        (3 * 1024**4, "3TiB"),
        (1_234_567, "1.2MiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize("size", [0, 1, 1000, 1024, 1023, 50 * 1024**2, 256_000_000, 10**12])
def test_format_size_reads_back_when_exact(size: int) -> None:
    assert parse_size(format_size(size)) == size
