"""``smtpbench conform`` end to end: exit codes, JSON shape, JUnit, transcripts, selection, redaction."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from smtpbench.conform import cli as conform_cli
from smtpbench.conform.checks import all_checks
from smtpbench.conform.evidence import render, render_log
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.report import Scrubber
from tests.sinkutil import SinkThread

RCPT = "user@example.test"


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root."""

    conform_cli.register(app)
    return app


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), ["conform", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_json_junit_transcripts_and_exit_0(tmp_path: Path) -> None:
    out_json, out_xml, tdir = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "t"
    with SinkThread() as server:
        code, output = invoke(
            f"127.0.0.1:{server.port}",
            "--rcpt",
            RCPT,
            "--only",
            "C-01,S",
            "--only",
            "A-01",
            "--timeout",
            "2",
            "--json",
            str(out_json),
            "--junit",
            str(out_xml),
            "--transcript",
            str(tdir),
        )
    assert code == 0, output
    doc = json.loads(out_json.read_text())
    assert doc["target"] == f"127.0.0.1:{server.port}"
    assert "T" in doc["started_at"] and doc["started_at"].endswith("+00:00")
    ids = [c["id"] for c in doc["checks"]]
    assert ids == ["C-01", "S-01", "S-02", "S-03", "S-04", "A-01"]
    for c in doc["checks"]:
        assert {"id", "title", "level", "verdict", "reason", "rfc", "evidence"} <= set(c)
        assert isinstance(c["evidence"], list)
    assert set(doc["summary"]) == {"pass", "fail", "warn", "info", "policy", "skip", "error"}
    assert sum(doc["summary"].values()) == len(ids)
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite is not None and len(suite.findall("testcase")) == len(ids)
    assert {tc.get("classname") for tc in suite.findall("testcase")} == {"greeting", "sequencing", "addresses"}
    assert sorted(p.name for p in tdir.iterdir()) == sorted(f"{i}.txt" for i in ids)
    assert "S: 220 " in (tdir / "C-01.txt").read_text()
    assert "C-01" in output and "pass:" in output


def test_failing_check_exit_1_with_failure_in_junit(tmp_path: Path) -> None:
    out_xml = tmp_path / "r.xml"
    # D-07 (a bare LF ends a command line) breaks a server-side MUST NOT: a fail, whose evidence quotes it.
    with SinkThread(faults={"D-07"}) as server:
        code, output = invoke(f"127.0.0.1:{server.port}", "--only", "D-07", "--timeout", "2", "--junit", str(out_xml))
    assert code == 1
    assert "D-07 FAIL" in output and "C: NOOP" in output and "MUST NOT" in output
    case = ET.parse(out_xml).getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is not None


def test_skip_option_and_skipped_needs(tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    with SinkThread() as server:
        code, _ = invoke(f"127.0.0.1:{server.port}", "--only", "data", "--skip", "D-06,D-03", "--json", str(out_json))
    assert code == 0
    checks = {c["id"]: c for c in json.loads(out_json.read_text())["checks"]}
    assert "D-06" not in checks and "D-03" not in checks
    assert checks["D-04"]["verdict"] == "skip" and "--rcpt" in checks["D-04"]["reason"]
    assert checks["D-07"]["verdict"] == "pass"


def test_connection_refused_exit_1_no_traceback(tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    code, output = invoke(f"127.0.0.1:{_refused_port()}", "--only", "greeting", "--json", str(out_json))
    assert code == 1
    assert "Traceback" not in output
    verdicts = {c["verdict"] for c in json.loads(out_json.read_text())["checks"]}
    assert verdicts == {"error"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["127.0.0.1:1", "--only", "Z-99"], "unknown check or group 'Z-99'"),
        (["127.0.0.1:1", "--skip", "nonsense"], "G-01"),
        (["127.0.0.1:99999"], "out of range"),
        (["127.0.0.1:1", "--tls", "--starttls"], "exclude each other"),
        (["127.0.0.1:1", "--rcpt", "no-at-sign"], "not a mailbox"),
        (["127.0.0.1:1", "--timeout", "0"], "out of range"),
        (["missing-profile.toml"], "file not found"),
    ],
)
def test_usage_errors_exit_2_one_line(args: list[str], needle: str) -> None:
    code, output = invoke(*args)
    assert code == 2
    assert needle in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_profile_supplies_target_and_options(tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    with SinkThread() as server:
        profile = tmp_path / "p.toml"
        profile.write_text(
            f'[target]\nhost = "127.0.0.1"\nport = {server.port}\n\n'
            f'[conform]\nrcpt = "{RCPT}"\nonly = ["A-01", "A-02"]\ntimeout = 2\njson = "{out_json}"\n'
        )
        code, output = invoke(str(profile))
    assert code == 0, output
    assert [c["id"] for c in json.loads(out_json.read_text())["checks"]] == ["A-01", "A-02"]


def test_profile_errors_are_pinned_to_keys(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[target]\nhost = "127.0.0.1"\n[conform]\npassword = "hunter2"\n')
    code, output = invoke(str(profile))
    assert code == 2 and "conform.password" in output and "hunter2" not in output
    profile.write_text('[target]\nhost = "127.0.0.1"\n[conform]\ntimeout = "soon"\n')
    code, output = invoke(str(profile))
    assert code == 2 and "conform.timeout" in output


def test_password_never_in_reports() -> None:
    opts = ConformOptions(user="alice", password="s3cret-pw")
    scrub = Scrubber(opts)
    import base64

    plain = base64.b64encode(b"\0alice\0s3cret-pw").decode()
    assert "s3cret-pw" not in scrub("password s3cret-pw here")
    assert plain not in scrub(f"C: AUTH PLAIN {plain}")
    log = [(">", f"AUTH PLAIN {plain}\r\n".encode()), ("<", b"235 ok\r\n")]
    assert render_log(log, {log[0][1]}) == ["C: AUTH PLAIN <redacted>", "S: 235 ok"]


def test_evidence_escapes_bare_line_ends() -> None:
    assert render("C: ", b"NOOP\r\n") == ["C: NOOP"]
    # An irregular line is shown octet for octet, its CRLF included.
    assert render("C: ", b"NOOP\rNOOP\r\n") == ["C: NOOP\\rNOOP\\r\\n"]
    assert render("S: ", b"250 ok\n") == ["S: 250 ok\\n"]
    assert render("C: ", b"x" * 5000 + b"\r\n")[0].endswith("[5000 octets]")


def test_catalogue_ids_are_unique_and_ordered() -> None:
    ids = [c.id for c in all_checks()]
    assert len(ids) == len(set(ids))
    assert ids[:4] == ["G-01", "C-01", "C-02", "C-03"]


def test_real_entry_point_refused_no_traceback() -> None:
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-m", "smtpbench", "conform", f"127.0.0.1:{_refused_port()}", "--only", "C-01", "--quiet"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "refused" in proc.stdout


@pytest.mark.parametrize(("faults", "verdict", "exit_code"), [(set(), "pass", 0), ({"D-02"}, "fail", 1)])
def test_store_dir_oracle_judges_delivered_content(
    tmp_path: Path, faults: set[str], verdict: str, exit_code: int
) -> None:
    from smtpbench.sink.config import SinkConfig

    store, out_json = tmp_path / "store", tmp_path / "r.json"
    with SinkThread(SinkConfig(faults=frozenset(faults), store_dir=store)) as server:
        code, output = invoke(
            f"127.0.0.1:{server.port}",
            "--rcpt",
            RCPT,
            "--only",
            "D-01,D-02",
            "--timeout",
            "2",
            "--store-dir",
            str(store),
            "--json",
            str(out_json),
        )
    assert code == exit_code, output
    checks = {c["id"]: c for c in json.loads(out_json.read_text())["checks"]}
    assert checks["D-02"]["verdict"] == verdict
    assert checks["D-01"]["verdict"] == "pass" and "Received" in checks["D-01"]["reason"]


@pytest.mark.parametrize("mode", ["--starttls", "--tls"])
def test_tls_modes_with_ca_file(tmp_path: Path, mode: str) -> None:
    from smtpbench.sink.config import SinkConfig
    from tests.sinkutil import tls_pair

    pair = tls_pair(tmp_path)
    cfg = SinkConfig(ssl_context=pair.server_context, implicit_tls=mode == "--tls")
    out_json = tmp_path / "r.json"
    with SinkThread(cfg) as server:
        code, output = invoke(
            f"localhost:{server.port}",
            mode,
            "--ca-file",
            pair.ca_file,
            "--only",
            "C-01,R-02,S-02,D-07",
            "--timeout",
            "2",
            "--json",
            str(out_json),
            "--concurrency",
            "2",
        )
    assert code == 0, output
    assert {c["verdict"] for c in json.loads(out_json.read_text())["checks"]} == {"pass"}


def test_unknown_selection_lists_every_area_and_each_one_runs(tmp_path: Path) -> None:
    # README: an unknown --only name exits 2 "and lists the valid ones": every area, 'dsn' too.
    code, output = invoke("127.0.0.1:1", "--only", "nonsense")
    assert code == 2
    listed = output.split("or an area (", 1)[1].split(")", 1)[0].replace("\n", " ").split(", ")
    areas = sorted({c.area for c in all_checks()})
    assert [a.strip() for a in listed] == areas
    out_json = tmp_path / "r.json"
    with SinkThread() as server:
        code, output = invoke(f"127.0.0.1:{server.port}", "--only", "dsn", "--timeout", "2", "--json", str(out_json))
    assert code == 0, output
    assert [c["id"] for c in json.loads(out_json.read_text())["checks"]] == ["N-01", "ES-01"]


def test_extension_check_headers_name_their_rfc_once(tmp_path: Path) -> None:
    # Extension checks carry "RFC 3461 ..." in their rfc field; the transcript and --explain headers
    # put "RFC " in front of 5321 section numbers only, never "RFC RFC 3461".
    with SinkThread() as server:
        code, output = invoke(
            f"127.0.0.1:{server.port}", "--only", "N-01", "--timeout", "2", "--transcript", str(tmp_path / "t")
        )
    assert code == 0, output
    head = (tmp_path / "t" / "N-01.txt").read_text().splitlines()[0]
    assert "RFC 3461" in head and "RFC RFC" not in head, head
    code, output = invoke("--explain", "N-01")
    assert code == 0 and "RFC 3461" in output.splitlines()[0] and "RFC RFC" not in output, output


def test_readme_check_table_is_the_catalogue() -> None:
    # README "### The checks": the count it states and the ids of its table are the registered checks.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The checks", 1)[1].split("\n## ", 1)[0]
    ids = [row.split("|")[1].strip() for row in section.splitlines() if row.startswith("| ") and "-0" in row]
    assert ids == [c.id for c in all_checks()]
    assert f"\n{len(all_checks())} checks implemented." in section
