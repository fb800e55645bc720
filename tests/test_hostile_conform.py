"""``smtpbench conform`` against broken and hostile servers.

A server that cannot be talked to turns every check into an ``error`` verdict
(exit 1) quickly; one that breaks partway still gives a complete report in
bounded time.  Never a traceback, never a hang.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smtpbench.errors import EXIT_FAILED
from tests.hostile import (
    HostileServer,
    MiniSMTP,
    Peer,
    close_during_handshake,
    endless_reply,
    greeting_then_silence,
    http_banner,
    huge_line,
    make_app,
    no_greeting,
    refused_port,
    reset_in_data,
    shutdown_421,
    slow_drip,
)


def conform(tmp_path: Path, target: str, *extra: str, timeout: float = 0.5) -> tuple[int, str, dict[str, Any], float]:
    """Run ``conform TARGET --timeout T --json`` in-process; returns (exit code, output, report, seconds)."""
    report = tmp_path / "report.json"
    args = ["conform", target, "--timeout", str(timeout), "--json", str(report), "--quiet", *extra]
    t0 = time.monotonic()
    result = CliRunner().invoke(make_app(), args)
    elapsed = time.monotonic() - t0
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output
    return result.exit_code, result.output, json.loads(report.read_text()), elapsed


def verdicts(report: dict[str, Any]) -> Counter[str]:
    """How many checks got each verdict."""
    return Counter(c["verdict"] for c in report["checks"])


UNREACHABLE: list[tuple[str, Callable[[Peer], None], tuple[str, ...], str]] = [
    ("no greeting", no_greeting, (), "no reply"),
    ("slow drip", slow_drip, (), "no reply"),
    ("10 MB line", huge_line, (), "exceeds cap"),
    ("endless reply", endless_reply, (), "exceeds cap"),
    ("HTTP answer", http_banner, (), "not an SMTP reply"),
    ("plaintext server, --tls", MiniSMTP(), ("--tls", "--insecure"), ""),
    ("closes during handshake", close_during_handshake, ("--tls", "--insecure"), ""),
]


@pytest.mark.parametrize(("handler", "extra", "why"), [c[1:] for c in UNREACHABLE], ids=[c[0] for c in UNREACHABLE])
def test_unusable_server_gives_all_error_verdicts(
    tmp_path: Path, handler: Callable[[Peer], None], extra: tuple[str, ...], why: str
) -> None:
    with HostileServer(handler) as srv:
        code, output, report, elapsed = conform(tmp_path, srv.target, *extra)
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert code == EXIT_FAILED, output
    counts = verdicts(report)
    assert set(counts) == {"error"} and counts["error"] == len(report["checks"]) >= 60, counts
    assert all(c["reason"] for c in report["checks"])
    assert why in report["checks"][0]["reason"]


@pytest.mark.parametrize(
    "target", [f"127.0.0.1:{refused_port()}", "nonexistent.invalid:25"], ids=["refused", "does not resolve"]
)
def test_unreachable_target_gives_all_error_verdicts(tmp_path: Path, target: str) -> None:
    code, _, report, elapsed = conform(tmp_path, target)
    assert elapsed < 5
    assert code == EXIT_FAILED
    assert set(verdicts(report)) == {"error"}


@pytest.mark.parametrize(
    "handler", [greeting_then_silence, shutdown_421, reset_in_data], ids=["silent after greeting", "421", "reset"]
)
def test_server_breaking_midway_gives_complete_report_in_bounded_time(
    tmp_path: Path, handler: Callable[[Peer], None]
) -> None:
    with HostileServer(handler) as srv:
        code, output, report, elapsed = conform(tmp_path, srv.target, "--concurrency", "16", timeout=0.25)
    # 70 checks, 16 at a time, each waiting a few 0.25 s replies at most.
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert code == EXIT_FAILED, output
    counts = verdicts(report)
    assert len(report["checks"]) >= 60
    assert counts["error"] + counts["fail"] > 0, counts
    for c in report["checks"]:
        assert c["reason"], c["id"]
    if handler is greeting_then_silence:
        # Nothing after the greeting can pass: only hygiene over the greetings seen may.
        assert {c["id"] for c in report["checks"] if c["verdict"] == "pass"} <= {"G-01", "C-01", "C-02"}


def busy_421(p: Peer) -> None:
    """Answers every connection with a 421 greeting and closes: a server that does not serve this client."""
    p.send(b"421 4.3.2 too busy, try later\r\n")


def test_server_that_always_greets_421_gives_all_error_verdicts_after_one_back_off(tmp_path: Path) -> None:
    # README: 421 greetings are retried with back-off (0.5 s to 4 s). Discovery does that once; a 421 that lasts
    # makes every check an error at once, rather than each check spending the same 7.5 s of back-off (minutes).
    with HostileServer(busy_421) as srv:
        code, output, report, elapsed = conform(tmp_path, srv.target)
    assert elapsed < 25, f"took {elapsed:.1f}s"
    assert code == EXIT_FAILED, output
    counts = verdicts(report)
    assert set(counts) == {"error"} and counts["error"] == len(report["checks"]) >= 60, counts
    assert all("greeting was 421" in c["reason"] for c in report["checks"])
    assert srv.connections == 5  # the first connection and four retries
