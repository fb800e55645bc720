"""Durations, sizes and ratios as written in profiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.errors import ConfigError
from smtpbench.units import format_duration, format_size, parse_duration, parse_ratio, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("1h2m3s", 3723.0),
        ("500us", 0.0005),
        ("2d", 172800.0),
        (" 10 s ", 10.0),
        ("10S", 10.0),
        ("15", 15.0),
        ("0.5", 0.5),
        (".5s", 0.5),
        (30, 30.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text, "k") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "s", "30x", "-5s", "5 m s", "1e3s", "thirty", "30s junk", "nan", True, [1], {}, -1, math.inf, math.nan]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(bad, "workload.duration", file="p.toml")
    message = str(info.value)
    assert message.startswith("p.toml: workload.duration: ")
    assert "duration like" in message
    assert "\n" not in message


def test_parse_duration_positive_rejects_zero() -> None:
    assert parse_duration("0s", "k") == 0.0
    with pytest.raises(ConfigError, match="zero duration"):
        parse_duration("0s", "workload.duration", positive=True)


@pytest.mark.parametrize(
    ("text", "octets"),
    [
        ("10KiB", 10240),
        ("1MiB", 1048576),
        ("1.5KB", 1500),
        ("1kb", 1000),
        ("2GiB", 2 * 1024**3),
        ("100B", 100),
        ("100", 100),
        (" 4 KiB ", 4096),
        (512, 512),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: object, octets: int) -> None:
    assert parse_size(text, "k") == octets


@pytest.mark.parametrize(
    "bad", ["", "KiB", "10XB", "1.5", "-1KiB", "10 KiBs", 1.5, True, -1, "2TiB", 2 * 1024**4, None]
)
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(bad, "message.size")
    assert str(info.value).startswith("message.size: ")
    assert "KiB" in str(info.value)


@pytest.mark.parametrize(
    ("value", "ratio"), [(0, 0.0), (1, 1.0), (0.05, 0.05), ("5%", 0.05), ("0.5", 0.5), ("100%", 1.0)]
)
def test_parse_ratio_accepts(value: object, ratio: float) -> None:
    assert parse_ratio(value, "k") == pytest.approx(ratio)


@pytest.mark.parametrize("bad", [-0.1, 1.01, "150%", "x", "%", True, None, math.nan])
def test_parse_ratio_rejects(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^target\.sink\.disconnect: .*ratio between 0 and 1"):
        parse_ratio(bad, "target.sink.disconnect")


@pytest.mark.parametrize(
    ("seconds", "text"), [(30.0, "30s"), (300.0, "5m"), (7200.0, "2h"), (90.0, "90s"), (0.02, "20ms"), (1.5, "1.5s")]
)
def test_format_duration_is_readable(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_format_duration_round_trips(seconds: float) -> None:
    text = format_duration(seconds)
    assert "e" not in text.lower()
    assert parse_duration(text, "k") == seconds


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=1024**4))
def test_format_size_round_trips(octets: int) -> None:
    assert parse_size(format_size(octets), "k") == octets
