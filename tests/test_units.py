"""Human sizes, as typed on the command line (``--part-size 64MiB``)."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest

from persevere._plan import make_plan
from persevere._progress import TqdmProgress
from persevere._units import (
    GiB,
    KiB,
    MiB,
    TiB,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8MiB", 8 * MiB),
        ("64M", 64 * MiB),
        ("5GiB", 5 * GiB),
        ("1234", 1234),
        ("1.5GiB", 3 * GiB // 2),
        ("0", 0),
        ("10b", 10),
        ("4k", 4 * KiB),
        ("4KiB", 4 * KiB),
        ("4kb", 4000),
        ("8MB", 8_000_000),
        ("2GB", 2_000_000_000),
        ("1T", TiB),
        ("1tb", 1000**4),
        ("  16 mib  ", 16 * MiB),
        ("0.5KiB", 512),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a size"),
        ("   ", "not a size"),
        ("MiB", "not a size"),
        ("-8MiB", "not a size"),
        ("8 Mi B", "not a size"),
        ("8,5MiB", "not a size"),
        ("1e9", "not a size"),
        ("1.5e3MiB", "not a size"),
        ("8XB", "unknown size unit 'XB'"),
        ("8 parsecs", "unknown size unit 'parsecs'"),
        ("1.5", "not a whole number of bytes"),
        ("0.1KiB", "not a whole number of bytes"),
    ],
)
def test_parse_size_refuses(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_size(text)
    # The message quotes what the user typed, so they can see which flag was wrong.
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("n_bytes", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (8 * MiB, "8.0 MiB"),
        (3 * GiB // 2, "1.5 GiB"),
        (5 * GiB, "5.0 GiB"),
        (10_000 * 5 * GiB, "48.8 TiB"),
        (2048 * TiB, "2048.0 TiB"),
    ],
)
def test_format_size(n_bytes, expected):
    assert format_size(n_bytes) == expected


@pytest.mark.parametrize("text", ["8MiB", "64M", "5GiB", "1.5GiB", "7TiB"])
def test_format_size_reads_back(text):
    assert parse_size(format_size(parse_size(text)).replace(" ", "")) == parse_size(text)


# -- one convention on the way out: binary units in the plan, the bar and the summary -------
@pytest.mark.parametrize(
    ("file_size", "part_size", "expected"),
    [
        (GiB, None, "1.0 GiB in 128 parts of 8.0 MiB"),
        (GiB, parse_size("8MB"), "1.0 GiB in 135 parts of 7.6 MiB (8,000,000 bytes)"),
        (GiB, parse_size("8M"), "1.0 GiB in 128 parts of 8.0 MiB"),
        (3 * 10**12, None, "2.7 TiB in 9,969 parts of 287.0 MiB"),
        (100, None, "100 B in 1 part"),
    ],
)
def test_plan_describes_itself_in_binary_units(file_size, part_size, expected):
    assert make_plan(file_size, part_size).describe() == expected


def test_progress_bar_shows_sizes_and_rate_in_binary_units(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = TqdmProgress("upload")
    bar.start(3 * GiB, GiB)
    for _ in range(4):
        time.sleep(0.25)
        bar.advance(100 * MiB)  # 400 MiB/s, 419 MB/s
    bar.close()
    last = stream.getvalue().strip().split("\r")[-1]
    match = re.search(r"\| (\S+ \S+)/(\S+ \S+) \[.*, ([\d.]+) MiB/s\]$", last)
    assert match, last
    assert match.group(1, 2) == ("1.4 GiB", "3.0 GiB")
    assert 50 < float(match.group(3)) <= 400  # sleeps overshoot; 419 would be decimal MB/s
    assert "MB" not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    if text[-1].isdigit():  # --older-than: a bare number is a guess of its unit
        with pytest.raises(ValueError, match=f"'{text}' has no unit: write e.g. {text}d, "):
            parse_duration(text, unit_required=True)
    else:
        assert parse_duration(text, unit_required=True) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (1, "1s"), (90, "90s"), (5400, "90m"), (3600, "1h"),
                          (604800, "7d"), (0.5, "0.5s")],
)  # fmt: skip
def test_durations_are_said_in_their_largest_whole_unit(seconds, text):
    assert format_duration(seconds) == text
