"""Thresholds: parsing (key paths, did-you-mean, units) and judging against summaries."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from smtpbench import schema_doc
from smtpbench.errors import EXIT_FAILED, EXIT_OK, ConfigError
from smtpbench.metrics.thresholds import (
    breached,
    evaluate,
    metric_names,
    parse_cli_threshold,
    parse_threshold,
    parse_thresholds,
    shown,
)
from tests.sinkutil import SinkThread
from tests.test_bad_input import assert_one_line_usage_error, invoke

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


@pytest.mark.parametrize(
    ("us", "text"),
    [(8319, "8.319ms"), (4120, "4.12ms"), (212_000, "212ms"), (250, "0.25ms"), (1_500_000, "1.5s"), (0, "0ms")],
)
def test_durations_are_shown_as_people_read_them(us: int, text: str) -> None:
    """8319 µs is "8.319ms" (format_duration's round-trip rule made it "0.008319s", in the live row and summary)."""
    t = parse_threshold("data_end.p99", "< 1ms", key="k")
    assert shown(t, float(us)) == text


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


def test_every_error_kind_in_the_readme_is_a_metric() -> None:
    """README, "Error kinds": each kind is ``errors.<kind>`` for a threshold (auth, message_unsupported and
    chunking_unsupported were refused as unknown metrics)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Error kinds") :]
    section = section[: section.index("\n### ")]
    kinds = re.findall(r"^\| `([a-z_]+)`", section, re.MULTILINE)
    assert {"timeout", "auth", "message_unsupported", "chunking_unsupported"} <= set(kinds), kinds
    for kind in kinds:
        parse_threshold(f"errors.{kind}", "== 0", key="k")
    parse_threshold("counts.messages_unsupported", "== 0", key="k")  # README, "Message mix and corpora"


# --------------------------------------------------------------------------- through the CLI, against the sink


def cli_run(tmp_path: Path, port: int, body: str, *args: str) -> tuple[int, str, str, dict[str, Any]]:
    """``smtpbench run`` in-process against 127.0.0.1:``port``; (exit code, stdout, stderr, summary.json)."""
    profile = tmp_path / "p.toml"
    profile.write_text(f'[target]\nhost = "127.0.0.1"\nport = {port}\n' + body)
    results = tmp_path / "results"
    code, out, err = invoke(["run", str(profile), "--results-dir", str(results), "--progress", "none", *args])
    runs = list(results.iterdir()) if results.exists() else []
    summary = json.loads((runs[0] / "summary.json").read_text()) if len(runs) == 1 else {}
    return code, out, err, summary


BUDGET = "[workload]\nsessions = 2\nmessages = 30\nmessages_per_session = 5\n"


def test_thresholds_that_hold_exit_0_and_are_marked(tmp_path: Path) -> None:
    body = BUDGET + '[thresholds]\n"transaction.p99" = "< 5s"\n"errors.rate" = "== 0"\n'
    body += '"counts.messages_accepted" = ">= 30"\n'
    with SinkThread(store_messages=False) as srv:
        code, out, err, s = cli_run(tmp_path, srv.port, body)
    assert code == EXIT_OK, err
    assert [(t["metric"], t["ok"]) for t in s["thresholds"]] == [
        ("transaction.p99", True),
        ("errors.rate", True),
        ("counts.messages_accepted", True),
    ]
    assert "✓ transaction.p99 < 5s (was " in out
    assert s["thresholds"][2]["value"] == 30


def test_a_failed_threshold_exits_1_and_says_which(tmp_path: Path) -> None:
    body = BUDGET + '[thresholds]\n"transaction.p99" = "< 5s"\n'
    with SinkThread(store_messages=False) as srv:
        code, out, err, s = cli_run(tmp_path, srv.port, body, "--threshold", "transaction.p50<1us")
    assert code == EXIT_FAILED, err
    assert s["status"] == "completed"
    assert [(t["metric"], t["condition"], t["ok"]) for t in s["thresholds"]] == [
        ("transaction.p99", "< 5s", True),
        ("transaction.p50", "< 1us", False),
    ]
    assert "✗ transaction.p50 < 1us (was " in out
    assert "smtpbench: 1 threshold(s) failed: transaction.p50 < 1us" in err
    # The resolved profile records the command-line threshold, so the run can be repeated as it was judged.
    [run_dir] = (tmp_path / "results").iterdir()
    # The report shows each value as the ✓/✗ line does ("4.2ms"), not the summary's µs without a unit.
    page = (run_dir / "report.html").read_text()
    for t in s["thresholds"]:
        assert f"<td>{t['metric']}</td><td>{html.escape(t['condition'])}</td><td>{t['shown']}</td>" in page
    assert '"transaction.p50" = [' in (run_dir / "profile.toml").read_text()


def test_abort_on_fail_stops_the_run_early(tmp_path: Path) -> None:
    body = (
        '[workload]\nsessions = 2\nduration = "30s"\ngrace = "1s"\n[output]\ninterval = "0.5s"\n'
        '[thresholds]\n"transaction.p50" = { condition = "< 1ms", abort_on_fail = true, delay = "1s" }\n'
    )
    with SinkThread(store_messages=False, delays={"data_end": 0.050}) as srv:
        code, _out, err, s = cli_run(tmp_path, srv.port, body)
    assert code == EXIT_FAILED, err
    assert s["status"] == "aborted_by_threshold"
    assert s["status_reason"].startswith("threshold transaction.p50 < 1ms failed at ")
    assert s["elapsed_s"] < 10  # stopped at ~1.5 s + 1 s grace, not after the 30 s duration
    assert s["thresholds"][0]["ok"] is False
    assert s["counts"]["messages_accepted"] > 0


def test_a_run_aborted_by_threshold_exits_1_even_when_the_final_figures_pass(tmp_path: Path) -> None:
    """Sessions of 1000 slow messages: none has completed at the 1 s check, so the run is stopped; the stop lets both
    finish and QUIT, so the final figures meet the condition.  The run was still stopped by it: exit 1."""
    body = (
        '[workload]\nsessions = 2\nmessages_per_session = 1000\nduration = "30s"\ngrace = "10s"\n'
        '[output]\ninterval = "0.5s"\n'
        '[thresholds]\n"counts.sessions_completed" = { condition = ">= 2", abort_on_fail = true, delay = "1s" }\n'
    )
    with SinkThread(store_messages=False, delays={"data_end": 0.020}) as srv:
        code, _out, err, s = cli_run(tmp_path, srv.port, body)
    assert s["status"] == "aborted_by_threshold", err
    assert s["status_reason"].startswith("threshold counts.sessions_completed >= 2 failed at ")
    assert s["thresholds"] == [
        {"metric": "counts.sessions_completed", "condition": ">= 2", "value": 2.0, "shown": "2", "ok": True}
    ]
    assert code == EXIT_FAILED, err
    assert "smtpbench: run aborted_by_threshold: threshold counts.sessions_completed >= 2 failed at " in err


def test_every_count_of_a_real_open_run_is_a_metric(tmp_path: Path) -> None:
    """``counts.<name>`` takes the keys of summary.json's counts (arrivals_intended was refused)."""
    body = '[workload]\nmodel = "open"\nrate = 50\nmessages = 5\n[output]\nreport = false\n'
    with SinkThread(store_messages=False) as srv:
        code, _out, err, s = cli_run(tmp_path, srv.port, body)
    assert code == EXIT_OK, err
    assert "arrivals_intended" in s["counts"]
    for name in s["counts"]:
        parse_threshold(f"counts.{name}", ">= 0", key="k")


def test_the_bdat_phase_takes_thresholds(tmp_path: Path) -> None:
    """README: "the bdat phase times each non-final chunk's reply"; ``bdat.p99`` was refused as an unknown metric."""
    body = BUDGET + '[smtp]\nchunking = "on"\nchunk_size = "1KiB"\n[message]\nsize = "4KiB"\n'
    with SinkThread(store_messages=False) as srv:
        code, _out, err, s = cli_run(tmp_path, srv.port, body, "--threshold", "bdat.p99<5s", "--no-report")
    assert code == EXIT_OK, err
    assert s["phases"]["bdat"]["count"] >= 30 * 3  # three 1 KiB chunks before the last of each 4 KiB message
    assert [(t["metric"], t["ok"]) for t in s["thresholds"]] == [("bdat.p99", True)]


def test_bad_thresholds_are_one_line_usage_errors(tmp_path: Path) -> None:
    code, out, err, _ = cli_run(tmp_path, 9, BUDGET, "--threshold", "transacton.p99<1s")
    assert_one_line_usage_error(code, out, err, "--threshold", "unknown metric", "did you mean 'transaction.p99'")
    code, out, err, _ = cli_run(tmp_path, 9, BUDGET + '[thresholds]\n"transaction.p99" = "fast"\n')
    assert_one_line_usage_error(code, out, err, 'thresholds."transaction.p99"', "is not a condition", "expected")
    code, out, err, _ = cli_run(tmp_path, 9, BUDGET + '[thresholds]\n"errors.rate" = ["< 1%", "< lots"]\n')
    assert_one_line_usage_error(code, out, err, 'thresholds."errors.rate"[1]', "is not a ratio")


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    schema = schema_doc.profile_schema()
    good = {"thresholds": {"transaction.p99": "< 250ms", "errors.rate": ["< 1%"]}}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"thresholds": {"transacton.p99": "< 250ms"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"thresholds": {"transaction.p99": {"condition": "< 1s", "abort": True}}}, schema)
