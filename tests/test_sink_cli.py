"""``smtpbench sink`` as a process: argument errors, listening line, SIGTERM, stats; EmbeddedSink."""

from __future__ import annotations

import contextlib
import json
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpbench.sink.cli import LISTENING_PREFIX, STATS_PREFIX
from smtpbench.sink.embedded import EmbeddedSink

SINK = [sys.executable, "-m", "smtpbench", "sink"]


@contextlib.contextmanager
def sink_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``smtpbench sink ARGS`` as a process: (process, port); SIGTERM and a bounded wait on exit."""
    proc = subprocess.Popen(SINK + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(LISTENING_PREFIX + "127.0.0.1:")
        yield proc, int(first.strip().rsplit(":", 1)[1])
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fault", "BOGUS"], "SEC-01"),
        (["--delay-rcpt", "20 parsecs"], "--delay-rcpt"),
        (["--reject-rcpt-temp", "1.5"], "--reject-rcpt-temp"),
        (["--auth-user", "bob"], "SMTPBENCH_SINK_PASSWORD"),
        (["--tls-cert", "/nonexistent.pem"], "--tls-key"),
        (["--implicit-tls"], "certificate"),
        (["--port", "70000"], "--port"),
        (["--max-size", "-1"], "--max-size"),
        (["--idle-timeout", "0"], "--idle-timeout"),
        (["--pause-at", "5s"], "--pause-at: a scheduled pause needs its length"),
        # These named the field, not the flag ('pause_for out of range: 7200.0', 'delay for data_end ...').
        (["--pause-for", "2h"], "--pause-for: 7200s is out of range"),
        (["--delay-data-end", "2h"], "--delay-data-end: 7200s is out of range"),
        (["--reject-rcpt-temp", "0.6", "--reject-rcpt-perm", "0.6"], "--reject-rcpt-temp and --reject-rcpt-perm"),
        (["--reject-data-temp", "0.6", "--reject-data-perm", "0.6"], "--reject-data-temp and --reject-data-perm"),
        (["--report-buffer", "0"], "--report-buffer: 0 is below 1"),
        # Usage errors (a value of the wrong type, an unknown option) were click's block of four lines.
        (["--port", "abc"], "'--port'"),
        (["--seed", "x"], "'--seed'"),
        (["--frobnicate"], "--frobnicate"),
        # Found out only when the stats were written, after the whole test: 'run failed', exit 3.
        (["--stats-file", "/nonexistent/stats.json"], "--stats-file: /nonexistent/stats.json is in no folder"),
        (["--stats-file", "/"], "--stats-file: / is a folder"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(SINK + args, capture_output=True, text=True, timeout=20, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert needle in lines[0]


def test_sink_process_prints_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    with (
        sink_process("--port", "0", "--stats-file", str(stats_file)) as (proc, port),
        smtplib.SMTP("127.0.0.1", port, timeout=5) as s,
    ):
        s.sendmail("a@x.example", ["u@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0
    stats_line = [line for line in out.splitlines() if line.startswith(STATS_PREFIX)]
    assert len(stats_line) == 1
    printed = json.loads(stats_line[0][len(STATS_PREFIX) :])
    assert printed["messages_accepted"] == 1
    assert printed["client_addresses"] == {"127.0.0.1": 1}  # connections per client address
    assert json.loads(stats_file.read_text()) == printed


def test_ehlo_offers_what_the_readme_lists() -> None:
    """The plain sink's EHLO keywords are the README's list (BINARYMIME was offered but not listed)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = " ".join(readme.split("## `smtpbench sink`", 1)[1].split("\n## ", 1)[0].split())
    listed = section.split("extensions it advertises (", 1)[1].split(", STARTTLS", 1)[0]
    with sink_process("--port", "0") as (_, port), smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo()
        offered = {k.upper() for k in s.esmtp_features}
    assert offered == set(listed.split(", ")), (offered, listed)


def test_embedded_sink_round_trip() -> None:
    sink = EmbeddedSink(["--delay-rcpt", "1ms", "--seed", "4", "--fault", "V-03"])
    with sink as (host, port):
        assert host == "127.0.0.1" and port > 0
        with smtplib.SMTP(host, port, timeout=5) as s:
            assert s.docmd("HELP")[0] == 250  # the fault was passed through
            s.sendmail("a@x.example", ["u@example.test"], b"hello\r\n")
    assert sink.returncode == 0
    assert sink.stats is not None and sink.stats["messages_accepted"] == 1


def test_embedded_sink_reports_startup_failure() -> None:
    with pytest.raises(RuntimeError, match="listening"), EmbeddedSink(["--fault", "BOGUS"]):
        pass


def test_embedded_sink_that_cannot_listen_says_why_at_once() -> None:
    """A child that exits before listening is reported with its code and its own words, not as a timeout."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(RuntimeError) as caught, EmbeddedSink(port=port):
            pass
    assert str(caught.value) == (
        f"sink exited (code 3) before listening: run failed: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_sink_users_and_token_files_with_a_foreign_client(tmp_path: Path) -> None:
    """The sink process authenticates CRAM-MD5 from Python's smtplib (a client we did not write)."""
    users = tmp_path / "users.csv"
    users.write_text("alice,alice-pw\nbob,bob-pw\n")
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    args = ["--port", "0", "--allow-plain-auth", "--auth-users-file", str(users), "--auth-token-file", str(token)]
    with sink_process(*args) as (proc, port):
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.ehlo()
            assert s.esmtp_features["auth"].split() == [
                "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"
            ]  # fmt: skip
            s.user, s.password = "bob", "bob-pw"
            assert s.auth("CRAM-MD5", s.auth_cram_md5)[0] == 235
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("alice", "bob-pw")
    out = proc.stdout.read() if proc.stdout else ""
    stats = json.loads(next(line for line in out.splitlines() if line.startswith(STATS_PREFIX))[len(STATS_PREFIX) :])
    assert stats["auth_successes"] == 1 and stats["auth_failures"] >= 1


def test_sink_bad_users_file_names_the_line(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("alice,pw\nbob\n")
    proc = subprocess.run(SINK + ["--auth-users-file", str(users)], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "line 2: expected 2 fields" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("below", ["", "sub"])
def test_store_that_cannot_be_a_folder_is_one_line_exit_2(tmp_path: Path, below: str) -> None:
    """A --store path under or at a plain file: a one-line --store error, exit 2 (it said 'run failed: cannot
    listen on 127.0.0.1:0: File exists', exit 3: the folder was made inside the server, whose OSError read as a
    bind failure)."""
    plain = tmp_path / "plain"
    plain.write_text("not a folder")
    store = plain / below if below else plain
    proc = subprocess.run([*SINK, "--port", "0", "--store", str(store)], capture_output=True, text=True, timeout=20)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("smtpbench: error: --store: ") and str(store) in lines[0], lines
    assert "listen" not in lines[0] and proc.stdout == ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_one_line_exit_3(workers: str) -> None:
    """A port another socket holds: ``run failed: cannot listen on ...``, exit 3, no traceback (it was an
    ExceptionGroup traceback with one worker: trio's nursery wrapped the bind error)."""
    if workers != "1" and not sys.platform.startswith("linux"):
        pytest.skip("--workers above 1 needs Linux")
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [*SINK, "--port", str(port), "--workers", workers], capture_output=True, text=True, timeout=60
        )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr
    assert lines[0] == f"smtpbench: run failed: cannot listen on 127.0.0.1:{port}: Address already in use", lines
