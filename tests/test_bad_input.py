"""Bad profiles and bad arguments through the real CLI: exit 2, one line, no traceback, no traffic.

The property test feeds mutated profiles (values swapped for wrong types and
out-of-range values, keys dropped or misspelt, the text itself corrupted) to
``smtpbench run`` against a real loopback server: every outcome must be a
finished run (exit 0, ``summary.json``), a run that could not complete a
session (exit 3, status ``failed``, one line saying why, ``summary.json``) or
a one-line error (exit 2).  Its examples are derandomized (tests/conftest.py):
the same 40 runs every time, about 12 s on a loaded 2-core machine, under a
180 s timeout.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from smtpbench.config import dump_toml
from smtpbench.errors import EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE
from tests.hostile import HostileServer, MiniSMTP, make_app

BASE = """\
[target]
host = "127.0.0.1"
port = 2525

[workload]
model = "closed"
sessions = 2
duration = "1s"
"""


def invoke(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(make_app(), args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_usage_error(code: int, out: str, err: str, *fragments: str) -> None:
    """Exit 2 with exactly one ``smtpbench: error:`` line naming every fragment."""
    assert code == EXIT_USAGE, (code, out, err)
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("smtpbench: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


PROFILE_CASES = [
    ("syntax error", BASE + "[message\nsize = 1\n", [], ["p.toml:9:9", "syntax error"]),
    ("unknown key", BASE + "sesions = 3\n", [], ["workload.sesions", "did you mean sessions"]),
    ("unknown section", BASE + "[workloads]\nrate = 1\n", [], ["workloads", "did you mean workload"]),
    ("wrong type", BASE.replace("sessions = 2", 'sessions = "two"'), [], ["workload.sessions"]),
    ("port out of range", BASE.replace("2525", "70000"), [], ["target.port", "70000"]),
    ("zero duration", BASE.replace('"1s"', '"0s"'), [], ["workload.duration"]),
    ("negative rate", BASE.replace('"closed"', '"open"').replace("sessions = 2", "rate = -5"), [], ["workload.rate"]),
    ("open model without rate", BASE.replace('"closed"', '"open"').replace("sessions = 2\n", ""), [], ["rate"]),
    ("negative grace", BASE + 'grace = "-1s"\n', [], ["workload.grace"]),
    ("bad timeout", BASE + '[smtp.timeouts]\nbanner = "soon"\n', [], ["smtp.timeouts.banner"]),
    ("password in the profile", BASE + '[target.auth]\nusername = "u"\npassword = "hunter2"\n', [], ["password"]),
    ("bad --set (no =)", BASE, ["--set", "workload.sessions"], ["--set"]),
    ("bad --set (unknown key)", BASE, ["--set", "workload.sesions=3"], ["workload.sesions", "did you mean"]),
    ("bad --set (range)", BASE, ["--set", "target.port=0"], ["target.port"]),
    ("bad --target (no port)", BASE, ["--target", "localhost"], ["--target"]),
    ("bad --target (port)", BASE, ["--target", "127.0.0.1:99999"], ["--target"]),
    ("bad --duration", BASE, ["--duration", "5 fortnights"], ["workload.duration"]),
    ("bad --progress", BASE, ["--progress", "loud"], ["--progress"]),
    (
        "misspelt protocol",
        BASE.replace("port = 2525", 'port = 2525\nprotocol = "lmtpx"'),
        [],
        ["target.protocol", "lmtp"],
    ),
    (
        "LMTP on port 25",
        BASE.replace("2525", "25").replace("[workload]", 'protocol = "lmtp"\n[workload]'),
        [],
        ["target.port", "25", "RFC 2033"],
    ),
    (
        "LMTP on the default port",
        BASE.replace("port = 2525", 'protocol = "lmtp"'),
        [],
        ["target.port", "LMTP needs an explicit port"],
    ),
    (
        "LMTP on port 25 by --target",
        BASE.replace("port = 2525", 'port = 24\nprotocol = "lmtp"'),
        ["--target", "127.0.0.1:25"],
        ["target.port", "RFC 2033"],
    ),
]


@pytest.mark.parametrize(
    ("body", "args", "fragments"), [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES]
)
def test_bad_profile_or_argument_is_one_line_exit_2(
    tmp_path: Path, body: str, args: list[str], fragments: list[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body, encoding="utf-8")
    code, out, err = invoke(["run", str(path), "--results-dir", str(tmp_path / "results"), *args])
    assert_one_line_usage_error(code, out, err, *fragments)
    assert not (tmp_path / "results").exists(), "no run may start on a bad profile"


def test_missing_profile_file(tmp_path: Path) -> None:
    code, out, err = invoke(["run", str(tmp_path / "nope.toml")])
    assert_one_line_usage_error(code, out, err, "nope.toml", "not found")


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(BASE, encoding="utf-8")
    code, out, err = invoke(["run", str(path), "--frobnicate"])
    assert code == EXIT_USAGE
    assert "--frobnicate" in err and "Traceback" not in out + err


def test_password_env_unset_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTPBENCH_TEST_UNSET", raising=False)
    path = tmp_path / "p.toml"
    path.write_text(BASE + '[target.auth]\nusername = "u"\npassword_env = "SMTPBENCH_TEST_UNSET"\n', encoding="utf-8")
    code, out, err = invoke(["run", str(path), "--results-dir", str(tmp_path / "r")])
    assert_one_line_usage_error(code, out, err, "SMTPBENCH_TEST_UNSET")


# ------------------------------------------------------------------ property: mutated profiles


def base_profile(port: int) -> dict[str, Any]:
    """A valid profile that ends within a fraction of a second against a working server."""
    return {
        "target": {"host": "127.0.0.1", "port": port},
        "smtp": {"pipelining": "auto", "timeouts": {"connect": "0.3s", "banner": "0.3s", "data_end": "0.3s"}},
        "workload": {"model": "closed", "sessions": 2, "duration": "0.2s", "grace": "0.2s", "seed": 1},
        "message": {"size": "1KiB", "recipients": 1, "variants": 2},
        "output": {"progress": "none", "interval": "0.1s"},
    }


# Values are drawn so that no valid choice can make a run long or huge (no large durations, sizes or
# session counts) and no host other than loopback (or a name that fails locally) can be reached.
SHORT = ["0.1s", "0.2s", 0.1, "0", 0, "-1s", -1, "soon", "", True, [], {}]
VALUES: dict[tuple[str, ...], list[Any]] = {
    ("target", "host"): ["127.0.0.1", "::1", "", 5, "nonexistent.invalid", "a b"],
    ("target", "port"): [0, -1, 70000, "25", 2.5, None],
    ("target", "tls"): ["none", "implicit", "starttls", "ssl", 1],
    ("target", "helo"): ["ok.example", "has space", "", 7],
    ("target", "insecure"): [True, "yes"],
    ("smtp", "pipelining"): ["auto", "on", "off", "maybe", False],
    ("smtp", "timeouts", "connect"): SHORT,
    ("smtp", "timeouts", "banner"): SHORT,
    ("smtp", "timeouts", "bogus"): ["1s"],
    ("workload", "model"): ["closed", "open", "half-open", 3],
    ("workload", "sessions"): [-1, 0, 1, 3, 2.5, "2", 10**9],
    ("workload", "rate"): [-1, 0, 20, 1e9, "fast"],
    ("workload", "arrival"): ["uniform", "poisson", "bursty"],
    ("workload", "duration"): SHORT,
    ("workload", "grace"): SHORT,
    ("workload", "think_time"): ["0.01s", "-1s", "x"],
    ("workload", "messages"): [1, 0, -5, "3"],
    ("workload", "messages_per_session"): [1, 2, 0, -1],
    ("workload", "max_in_flight"): [1, 0, 10],
    ("workload", "seed"): [1, -1, "s", 2**70],
    ("workload", "stages"): [[{"duration": "0.1s", "target": 2}], [{"duration": "x", "target": 1}], "nope", []],
    ("message", "size"): ["1KiB", "0", "-1", "2GiB", "abc", 100, {"distribution": "uniform", "min": 10, "max": 5}],
    ("message", "recipients"): [2, 0, 1001, {"min": 1, "max": 3}, {"min": 3, "max": 1}, "many"],
    ("message", "from"): ["a{n}@x.test", "{bad}@x.test", "no-at-sign", "{n"],
    ("message", "headers"): [{"X-A": "b"}, {"bad name": "x"}, {"From": "x@y"}, "x"],
    ("message", "variants"): [1, 0, 20000],
    ("output", "interval"): SHORT,
    ("output", "progress"): ["none", "plain", "sparkly"],
    ("workload", "sesions"): [3],
    ("tagret", "host"): ["x"],
    ("workload", "sessions", "deep"): [1],
}
KEYS = sorted(VALUES)


@st.composite
def mutated_profiles(draw: st.DrawFn, port: int) -> str:
    """TOML text of the base profile after a few random edits (and maybe a corrupted character)."""
    doc = copy.deepcopy(base_profile(port))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS))
        node = doc
        for part in key[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if draw(st.booleans()) and key[-1] in node:
            del node[key[-1]]
            continue
        value = draw(st.sampled_from(VALUES[key]))
        if value is None:
            node.pop(key[-1], None)
        else:
            node[key[-1]] = value
    target = dump_toml({"target": doc.pop("target")})
    rest = dump_toml(doc)
    if rest and draw(st.booleans()):
        # Corrupt one character outside [target], so the host can only ever be loopback.
        i = draw(st.integers(0, len(rest) - 1))
        rest = rest[:i] + draw(st.sampled_from(["=", "[", '"', "\n", "x", "9", "}", ""])) + rest[i + 1 :]
    return target + "\n" + rest


@pytest.fixture(scope="module")
def mini_server() -> Any:
    with HostileServer(MiniSMTP()) as srv:
        yield srv


@pytest.mark.timeout(180)
def test_mutated_profiles_run_or_fail_cleanly(tmp_path: Path, mini_server: HostileServer) -> None:
    counter = iter(range(10**6))
    seen: list[int] = []

    # Always tried too: the server listens on 127.0.0.1 only, so ::1 refuses every session (exit 3).
    refused = copy.deepcopy(base_profile(mini_server.port))
    refused["target"]["host"] = "::1"

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(text=mutated_profiles(mini_server.port))
    @example(text=dump_toml(refused))
    def prop(text: str) -> None:
        n = next(counter)
        path = tmp_path / f"p{n}.toml"
        path.write_text(text, encoding="utf-8")
        results = tmp_path / f"r{n}"
        # The message budget ends every valid run quickly; --results-dir keeps results in tmp_path.
        args = ["run", str(path), "--quiet", "--results-dir", str(results), "--set", "workload.messages=3"]
        code, out, err = invoke(args)
        seen.append(code)
        assert "Traceback" not in out + err
        if code in (EXIT_OK, EXIT_RUN_ERROR):
            (run,) = list(results.iterdir())
            summary = json.loads((run / "summary.json").read_text())
            assert summary["status"] == ("completed" if code == EXIT_OK else "failed"), (code, err)
            if code == EXIT_RUN_ERROR:  # e.g. a host that does not resolve, or no session completed
                lines = [ln for ln in err.splitlines() if ln.strip()]
                assert len(lines) == 1 and lines[0].startswith("smtpbench: run failed: "), err
                assert summary["status_reason"] in lines[0]
        else:
            assert_one_line_usage_error(code, out, err)

    prop()
    # Every outcome was exercised: real runs against the server, failed runs, and refusals.
    assert EXIT_OK in seen and EXIT_USAGE in seen and EXIT_RUN_ERROR in seen, seen
    print(f"exit codes: {sorted(set(seen))}, runs: {seen.count(EXIT_OK)}/{len(seen)}")


def test_conform_refuses_an_lmtp_profile(tmp_path: Path) -> None:
    """The conformance checks are SMTP's: an LMTP target is a one-line usage error, not a run of wrong verdicts."""
    path = tmp_path / "p.toml"
    path.write_text('[target]\nhost = "127.0.0.1"\nport = 24\nprotocol = "lmtp"\n', encoding="utf-8")
    code, out, err = invoke(["conform", str(path)])
    assert code == EXIT_USAGE and "Traceback" not in out + err, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "target.protocol" in lines[0] and "not LMTP" in lines[0], err


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["conform", "127.0.0.1:99999"], ["TARGET", "99999"]),
        (["conform", "--explain", "g01"], ["--explain", "did you mean G-01?"]),
        (["probe", "127.0.0.1:70000", "--to", "a@b.example"], ["70000"]),
        (["sink", "--workers", "0"], ["--workers", '"auto"']),
        (["sink", "--delay-quit", "soon"], ["--delay-quit"]),
        (["report", "/nonexistent/results"], ["no such results folder"]),
        (["compare", "/nonexistent/a", "/nonexistent/b"], ["no such results folder"]),
        (["merge", "/nonexistent/a", "--out", "/nonexistent/b"], ["/nonexistent/a"]),
        (["conform", "profiles/smoke.toml"], ["target.embedded", "smtpbench sink --port 2525"]),
    ],
)
def test_every_command_words_bad_input_alike(args: list[str], fragments: list[str]) -> None:
    """Every sub-command ends bad input the same way (errors.fail): exit 2, one ``smtpbench: error:`` line."""
    assert_one_line_usage_error(*invoke(args), *fragments)


def test_ca_file_without_a_certificate_is_one_line_before_any_traffic(tmp_path: Path) -> None:
    """run, conform and probe check a CA file when they start: it was a traceback (run) or an error per check."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n", encoding="utf-8")
    profile = tmp_path / "p.toml"
    profile.write_text(BASE.replace("port = 2525", f'port = 2525\ntls = "starttls"\nca_file = "{bad}"'), "utf-8")
    for args, key in (
        (["run", str(profile)], "target.ca_file"),
        (["conform", "127.0.0.1:2525", "--starttls", "--ca-file", str(bad)], "--ca-file"),
        (["probe", "127.0.0.1:2525", "--starttls", "--ca-file", str(bad), "--to", "a@b.example"], "--ca-file"),
    ):
        assert_one_line_usage_error(*invoke(args), key, "holds no usable certificate")
