"""Issue 12, section 3: ``target.source_addresses`` and the local-resource error kinds, through the real CLI.

* sessions bind round-robin to 127.0.0.x source addresses; the sink's
  client-address counts show each one used;
* a bad address list or network exits 2 with one line naming the key path;
* a source address that is not on this host (192.0.2.1, TEST-NET-1: binding
  fails locally, no packet leaves) is the ``eaddrnotavail`` error kind with its
  hint, and the run ends cleanly: status ``failed``, exit 3;
* out of file descriptors (a lowered RLIMIT_NOFILE in a child process) is the
  ``emfile`` kind with its hint, without a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smtpbench.errors import EXIT_OK, EXIT_RUN_ERROR
from smtpbench.load.sources import MAX_SOURCE_ADDRESSES, parse_sources
from smtpbench.net.errors import HINTS
from tests.sinkutil import SinkThread
from tests.test_bad_input import assert_one_line_usage_error, invoke

ROOT = Path(__file__).resolve().parent.parent


def profile(tmp_path: Path, port: int, sources: str, workload: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[target]\nhost = "127.0.0.1"\nport = {port}\nsource_addresses = {sources}\n'
        f'[workload]\nmodel = "closed"\n{workload}\n[output]\nresults_dir = "{tmp_path / "results"}"\nreport = false\n'
    )
    return str(path)


def summary_of(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = (tmp_path / "results").iterdir()
    doc: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return doc


@pytest.mark.parametrize(
    ("sources", "expected"),
    [('["127.0.0.2", "127.0.0.3"]', {"127.0.0.2", "127.0.0.3"}), ('"127.0.0.0/30"', {"127.0.0.1", "127.0.0.2"})],
)
def test_sessions_bind_round_robin_and_the_sink_sees_each_address(
    tmp_path: Path, sources: str, expected: set[str]
) -> None:
    with SinkThread(store_messages=False) as srv:
        path = profile(tmp_path, srv.port, sources, "sessions = 4\nmessages = 40\nduration = 60")
        code, out, err = invoke(["run", path, "-q"])
        seen = dict(srv.stats.client_addresses)
        connections = srv.stats.connections
    assert code == EXIT_OK, (out, err)
    s = summary_of(tmp_path)
    assert s["counts"]["messages_accepted"] == 40 and s["counts"]["errors"] == 0
    assert set(seen) == expected, seen
    assert sum(seen.values()) == connections == s["counts"]["sessions_started"]
    # Round-robin by session number: the addresses' shares differ by at most one connection.
    assert max(seen.values()) - min(seen.values()) <= 1, seen


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ('"not-an-ip"', "target.source_addresses", "not a network"),
        ('["127.0.0.2", "nope"]', "target.source_addresses[1]", "not an IP address"),
        ('["127.0.0.2", "::1"]', "target.source_addresses[1]", "IPv6"),
        ('["127.0.0.2", "127.0.0.2"]', "target.source_addresses[1]", "listed twice"),
        ('["0.0.0.0"]', "target.source_addresses[0]", "not a unicast address"),
        ("[]", "target.source_addresses", "empty array"),
        ("5", "target.source_addresses", "got an integer"),
        ('"10.0.0.0/8"', "target.source_addresses", f"at most {MAX_SOURCE_ADDRESSES} addresses"),
        ('"127.0.0.1/30"', "target.source_addresses", "host bits set"),
        ('["::1"]', "target.source_addresses", "cannot reach the IPv4 target"),
    ],
)
def test_bad_source_addresses_exit_2_naming_the_key(tmp_path: Path, value: str, path: str, fragment: str) -> None:
    code, out, err = invoke(["run", profile(tmp_path, 2525, value, "sessions = 1\nduration = 1"), "-q"])
    assert_one_line_usage_error(code, out, err, path, fragment)
    assert not (tmp_path / "results").exists()  # refused before any traffic


def test_a_network_names_its_host_addresses() -> None:
    assert [str(ip) for ip in parse_sources("127.0.0.0/29")] == [f"127.0.0.{i}" for i in range(1, 7)]
    assert [str(ip) for ip in parse_sources("::1/128")] == ["::1"]


def test_a_source_address_not_on_this_host_is_eaddrnotavail_with_the_hint(tmp_path: Path) -> None:
    with SinkThread(store_messages=False) as srv:
        path = profile(tmp_path, srv.port, '["192.0.2.1"]', "sessions = 2\nduration = 1")
        code, out, err = invoke(["run", path, "-q"])
        connections = srv.stats.connections
    assert code == EXIT_RUN_ERROR, (out, err)
    assert "Traceback" not in out + err
    assert connections == 0  # no connection reached the sink
    s = summary_of(tmp_path)
    assert s["status"] == "failed"
    assert set(s["errors"]) == {"eaddrnotavail"} and s["errors"]["eaddrnotavail"] == s["counts"]["sessions_failed"] > 0
    assert "dominant cause: eaddrnotavail" in s["status_reason"]
    assert f"hint: eaddrnotavail ({s['errors']['eaddrnotavail']:,}): {HINTS['eaddrnotavail']}" in err
    assert "source_addresses" in HINTS["eaddrnotavail"]


def _low_fd_limit() -> None:
    """In the child, before exec: at most 48 open files (plenty to start, too few for 100 sessions)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))


def test_out_of_file_descriptors_is_emfile_with_the_hint_not_a_crash(tmp_path: Path) -> None:
    """100 sessions held 300 ms in the banner by the sink, in a process allowed 48 files: most get EMFILE."""
    with SinkThread(store_messages=False, delays={"banner": 0.3}) as srv:
        path = profile(tmp_path, srv.port, '["127.0.0.2"]', "sessions = 100\nduration = 1\ngrace = 10")
        proc = subprocess.run(
            [sys.executable, "-m", "smtpbench", "run", path, "--progress", "none"],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_low_fd_limit,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="400"),  # rich must not wrap the hint
        )
        accepted = srv.stats.messages_accepted
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == EXIT_OK, (proc.stdout, proc.stderr)
    s = summary_of(tmp_path)
    emfile = s["errors"].get("emfile", 0)
    assert emfile > 0, s["errors"]
    assert s["counts"]["messages_accepted"] == accepted > 0  # the sessions that got a socket went through
    assert f"hint: emfile ({emfile:,}): {HINTS['emfile']}" in proc.stdout
    assert "ulimit -n" in HINTS["emfile"]
