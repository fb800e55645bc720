"""Thresholds: parsing (key paths, did-you-mean, units) and judging against summaries."""

from __future__ import annotations

import pytest

from smtpbench.errors import ConfigError
from smtpbench.metrics.thresholds import (
    breached,
    evaluate,
    metric_names,
    parse_cli_threshold,
    parse_threshold,
    parse_thresholds,
)

SUMMARY = {
    "counts": {"sessions_started": 200, "sessions_failed": 1, "sessions_unfinished": 1, "messages_accepted": 990},
    "throughput": {"messages_per_s": 480.5},
    "phases": {"transaction": {"count": 990, "p50_us": 20_000, "p99_us": 212_000, "max_us": 400_000}},
    "corrected": {"session": {"count": 200, "p99_us": 2_500_000}},
    "errors": {"timeout": 1},
}


def test_duration_condition_compares_in_microseconds() -> None:
    t = parse_threshold("transaction.p99", "< 250ms", key="k")
    assert t.limit == 250_000
    [r] = evaluate([t], SUMMARY)
    assert r["ok"] is True and r["value"] == 212_000 and r["shown"] == "212ms"
    [r] = evaluate([parse_threshold("transaction.p99", "< 200ms", key="k")], SUMMARY)
    assert r["ok"] is False


def test_rate_counts_and_throughput() -> None:
    results = evaluate(
        parse_thresholds(
            {
                "errors.rate": "< 1%",
                "errors.timeout": "== 0",
                "errors.reset": "== 0",
                "throughput.messages_per_s": ">= 500",
                "corrected.session.p99": "< 2s",
                "counts.messages_accepted": [">= 900", "<= 1000"],
            }
        ),
        SUMMARY,
    )
    assert [(r["metric"], r["ok"]) for r in results] == [
        ("errors.rate", False),  # 2 of 200 is 1 %, not below it
        ("errors.timeout", False),
        ("errors.reset", True),
        ("throughput.messages_per_s", False),
        ("corrected.session.p99", False),
        ("counts.messages_accepted", True),
        ("counts.messages_accepted", True),
    ]


def test_error_rate_is_failed_plus_unfinished_over_started() -> None:
    [r] = evaluate([parse_threshold("errors.rate", "<= 1%", key="k")], SUMMARY)
    assert r["value"] == pytest.approx(0.01) and r["ok"] is True
    [r] = evaluate([parse_threshold("errors.rate", "< 1%", key="k")], SUMMARY)
    assert r["ok"] is False


def test_no_data_fails() -> None:
    [r] = evaluate([parse_threshold("tls.p99", "< 1s", key="k")], SUMMARY)
    assert r["ok"] is False and r["value"] is None and r["shown"] == "no data"


def test_unknown_metric_did_you_mean() -> None:
    with pytest.raises(ConfigError) as e:
        parse_thresholds({"transacton.p99": "< 1s"}, file="p.toml")
    text = str(e.value)
    assert text.startswith('p.toml: thresholds."transacton.p99": unknown metric')
    assert "did you mean 'transaction.p99'" in text


@pytest.mark.parametrize(
    ("metric", "spec", "needle"),
    [
        ("transaction.p99", "250ms", "is not a condition"),
        ("transaction.p99", "< fast", "is not a duration"),
        ("errors.rate", "< 200%", "out of range"),
        ("counts.messages_sent", "> many", "is not a number"),
        ("transaction.p99", 5, "got int"),
        ("transaction.p99", {"condition": "< 1s", "abort": True}, "unknown key 'abort'"),
        ("transaction.p99", {"condition": "< 1s", "abort_on_fail": "yes"}, "abort_on_fail"),
        ("transaction.p42", "< 1s", "unknown metric"),
    ],
)
def test_malformed_conditions_name_the_key(metric: str, spec: object, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_threshold(metric, spec, key=f'thresholds."{metric}"', file="p.toml")
    assert needle in str(e.value) and f'thresholds."{metric}"' in str(e.value)


def test_cli_form() -> None:
    t = parse_cli_threshold("transaction.p99<250ms")
    assert (t.metric, t.op, t.limit) == ("transaction.p99", "<", 250_000)
    assert parse_cli_threshold("errors.timeout == 0").limit == 0
    with pytest.raises(ConfigError, match="--threshold"):
        parse_cli_threshold("transaction.p99")


def test_abort_on_fail_waits_for_delay_and_data() -> None:
    t = parse_threshold("transaction.p99", {"condition": "< 100ms", "abort_on_fail": True, "delay": "10s"}, key="k")
    assert breached([t], SUMMARY, elapsed_s=5) is None
    assert breached([t], SUMMARY, elapsed_s=11) is t
    assert breached([t], {"phases": {}}, elapsed_s=11) is None  # no data yet is no breach
    plain = parse_threshold("transaction.p99", "< 100ms", key="k")
    assert breached([plain], SUMMARY, elapsed_s=11) is None


def test_every_listed_metric_parses() -> None:
    for name in metric_names():
        parse_threshold(name, ">= 0", key="k")
