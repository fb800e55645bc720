"""The CI gate from the command line, against the sink: baselines, waivers, stale waivers, JUnit skipped."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from smtpbench.conform.waivers import parse_waivers
from smtpbench.errors import ConfigError
from tests.sinkutil import SinkThread
from tests.test_conform_cli import invoke


def _profile(tmp_path: Path, port: int, expect: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(
        f'[target]\nhost = "127.0.0.1:{port}"\n\n[conform]\nonly = ["D-07", "A-01"]\ntimeout = 2\n\n{expect}'
    )
    return path


def test_baseline_turns_a_known_failure_green_and_a_new_one_red(tmp_path: Path) -> None:
    first, junit = tmp_path / "first.json", tmp_path / "r.xml"
    with SinkThread(faults={"D-07"}) as server:
        target = f"127.0.0.1:{server.port}"
        code, _ = invoke(target, "--only", "D-07,A-01", "--timeout", "2", "--json", str(first))
        assert code == 1
        code, output = invoke(
            target, "--only", "D-07,A-01", "--timeout", "2", "--baseline", str(first), "--junit", str(junit)
        )
    assert code == 0, output
    assert "FAIL (waived)" in output
    case = next(c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name", "").startswith("D-07"))
    skipped = case.find("skipped")
    assert skipped is not None and "in the baseline" in skipped.get("message", "")
    # A failure that is not in the baseline still fails the run.
    with SinkThread(faults={"A-01"}) as server:
        code, _ = invoke(f"127.0.0.1:{server.port}", "--only", "D-07,A-01", "--timeout", "2", "--baseline", str(first))
    assert code == 1


def test_waivers_and_stale_waivers(tmp_path: Path) -> None:
    waiver = '[conform.expect]\nD-07 = { verdict = "fail", reason = "bare LF accepted until the upgrade" }\n'
    out = tmp_path / "r.json"
    with SinkThread(faults={"D-07"}) as server:
        code, output = invoke(str(_profile(tmp_path, server.port, waiver)), "--json", str(out))
    assert code == 0, output
    doc = json.loads(out.read_text())
    d07 = next(c for c in doc["checks"] if c["id"] == "D-07")
    assert d07["verdict"] == "fail" and "bare LF accepted until the upgrade" in d07["waived"]
    assert doc["gate"] == {"new_failures": [], "stale_waivers": [], "waived": ["D-07"]}
    assert d07["exchange"] and any(line.startswith("C: NOOP") for line in d07["exchange"])
    assert d07["rule"]["binds"] == "server" and d07["rule"]["keyword"] == "MUST NOT"
    # The server was fixed: the waiver no longer matches, and the run says so.
    with SinkThread() as server:
        code, output = invoke(str(_profile(tmp_path, server.port, waiver)))
    assert code == 1
    assert "stale waiver: D-07: waiver expects fail, got pass" in output


def test_bad_waivers_are_one_line_errors(tmp_path: Path) -> None:
    known = {"D-07"}
    for table, needle in (
        ({"Q-01": {"verdict": "fail", "reason": "x"}}, "unknown check id"),
        ({"D-07": {"verdict": "broken", "reason": "x"}}, "unknown verdict"),
        ({"D-07": {"verdict": "fail"}}, "needs a reason"),
        ({"D-07": "fail"}, "must be"),
    ):
        try:
            parse_waivers(table, known)
        except ConfigError as exc:
            assert needle in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{table} was accepted")
    with SinkThread() as server:
        path = _profile(tmp_path, server.port, '[conform.expect]\nD-07 = { verdict = "nope", reason = "x" }\n')
        code, output = invoke(str(path))
    assert code == 2 and "Traceback" not in output and "unknown verdict" in output
    code, output = invoke("127.0.0.1:25", "--baseline", str(tmp_path / "missing.json"))
    assert code == 2 and "baseline" in output


def test_explain_prints_the_sentence(tmp_path: Path) -> None:
    code, output = invoke("--explain", "S-01")
    assert code == 0
    assert "binding the server" in output and "SHOULD" in output and "sends:" in output
    code, output = invoke("--explain", "nope")
    assert code == 2 and "unknown check" in output


def test_fix_it_hints_follow_the_banner() -> None:
    from smtpbench.conform.hints import apply_hints, identify
    from smtpbench.conform.model import CheckResult, Verdict

    assert identify("mx.example.test ESMTP Postfix (Debian/GNU) mx.example.test") == "postfix"
    assert identify("mail.example ESMTP Exim 4.96 Mon, 1 Jan 2024") == "exim"
    assert identify("smtp.example ESMTP OpenSMTPD") == "opensmtpd"
    assert identify("sink.smtpbench.test ESMTP smtpbench sink") is None
    results = [
        CheckResult("D-05", "t", "data", "MUST", "4.1.1.4", Verdict.FAIL, "r", []),
        CheckResult("S-01", "t", "sequencing", "MUST", "4.1.4", Verdict.PASS, "r", []),
    ]
    assert apply_hints(results, "220 mx ESMTP Postfix") == "postfix"
    assert results[0].hint is not None and "smtpd_forbid_bare_newline = normalize" in results[0].hint
    assert results[1].hint is None  # a pass needs no fix


def test_a_bad_waiver_names_its_profile(tmp_path: Path) -> None:
    # Like every other profile error ('p.toml: conform.bogus: unknown key'), a bad waiver names the file.
    with SinkThread() as server:
        path = _profile(tmp_path, server.port, '[conform.expect]\nD-99 = { verdict = "fail", reason = "x" }\n')
        code, output = invoke(str(path))
    assert code == 2, output
    assert output.strip() == (
        f"smtpbench: error: {path}: conform.expect.D-99: unknown check id 'D-99' (expected a check id such as D-07)"
    )
