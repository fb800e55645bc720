"""Profile loading, validation, overrides and the resolved dump."""

from __future__ import annotations

import random
import re
import textwrap
from pathlib import Path

import pytest

from smtpbench.errors import ConfigError
from smtpbench.load.profile import (
    FixedSize,
    LognormalSize,
    Profile,
    UniformSize,
    WeightedSize,
    load_profile,
    parse_target,
    resolved_toml,
)

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
SHIPPED = sorted(PROFILES.glob("*.toml"))

MINIMAL = """
[target]
host = "127.0.0.1"
port = 2525

[workload]
sessions = 2
duration = "10s"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def error_of(path: str, *overrides: str, **flags: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_profile(path, overrides, **flags)
    message = str(info.value)
    assert "\n" not in message
    return message


def same_settings(a: Profile, b: Profile) -> bool:
    fields = ("target", "smtp", "workload", "message", "output", "conform")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


# ------------------------------------------------------------ shipped profiles


def test_all_four_profiles_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"smoke.toml", "closed-loop.toml", "open-rate.toml", "ramp.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_profile_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    profile = load_profile(str(path))
    again = load_profile(write(tmp_path, resolved_toml(profile), "resolved.toml"))
    assert same_settings(profile, again)


def test_shipped_profiles_say_what_they_promise() -> None:
    smoke = load_profile(str(PROFILES / "smoke.toml"))
    assert smoke.target.embedded and smoke.workload.model == "closed"
    assert smoke.workload.total_duration is not None and smoke.workload.total_duration <= 10
    assert smoke.smtp.pipelining == "auto"
    closed = load_profile(str(PROFILES / "closed-loop.toml"))
    assert (closed.target.host, closed.target.port) == ("127.0.0.1", 2525)
    assert (closed.workload.sessions, closed.workload.messages_per_session, closed.workload.duration) == (50, 100, 30.0)
    open_rate = load_profile(str(PROFILES / "open-rate.toml"))
    assert (open_rate.workload.model, open_rate.workload.rate, open_rate.workload.arrival) == ("open", 200.0, "poisson")
    assert open_rate.workload.duration == 30.0 and open_rate.workload.max_in_flight >= 1
    ramp = load_profile(str(PROFILES / "ramp.toml"))
    targets = [s.target for s in ramp.workload.stages]
    assert ramp.workload.model == "open" and len(targets) == 3
    assert targets[0] > 0 and targets[-1] < max(targets)
    assert ramp.workload.total_duration == sum(s.duration for s in ramp.workload.stages)


# ------------------------------------------------------------ defaults


def test_minimal_profile_gets_documented_defaults(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, MINIMAL))
    assert p.target.helo == "smtpbench.example" and p.target.tls == "none" and not p.target.embedded
    assert p.target.auth is None
    assert p.smtp.pipelining == "auto"
    assert p.smtp.timeouts["connect"] == 30.0
    assert p.smtp.timeouts["data_end"] == 600.0 and p.smtp.timeouts["data"] == 120.0
    assert p.smtp.timeouts["ehlo"] == p.smtp.timeouts["other"] == 300.0
    w = p.workload
    assert (w.model, w.sessions, w.rate, w.messages_per_session, w.think_time, w.grace) == (
        "closed",
        2,
        0.0,
        1,
        0.0,
        5.0,
    )
    assert w.messages is None and w.stages == () and w.total_duration == 10.0
    assert w.seed >= 0
    m = p.message
    assert m.size == FixedSize(10240) and (m.recipients_min, m.recipients_max) == (1, 1)
    assert m.from_template == "sender{n}@smtpbench.example" and m.to_template == "user{n}@example.test"
    assert m.variants == 32 and m.headers == {}
    assert (p.output.results_dir, p.output.progress, p.output.interval) == ("results", "auto", 1.0)
    assert p.conform == {}


def test_implicit_tls_defaults_to_port_465(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[target]\nhost = "localhost"\ntls = "implicit"\ninsecure = true\n[workload]\nsessions = 1\nmessages = 5\n',
    )
    p = load_profile(path)
    assert p.target.port == 465 and p.workload.total_duration is None and p.workload.messages == 5


def test_seed_is_recorded_in_resolved_profile(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, MINIMAL))
    assert f"seed = {p.workload.seed}" in resolved_toml(p)
    fixed = load_profile(write(tmp_path, MINIMAL), ["workload.seed=1234"])
    assert fixed.workload.seed == 1234


def test_conform_section_is_validated_by_run_too(tmp_path: Path) -> None:
    # Issue 9: [conform] is part of the schema, so `run` refuses what `conform` would refuse.
    path = write(tmp_path, MINIMAL + '\n[conform]\nrcpt = "postmaster@example.test"\nonly = ["A-01", "D"]\n')
    assert load_profile(path).conform == {"rcpt": "postmaster@example.test", "only": ["A-01", "D"]}
    path = write(tmp_path, MINIMAL + '\n[conform]\nanything = [1, "two"]\n[conform.nested]\nx = 1\n', "bad.toml")
    assert "conform.anything: unknown key" in error_of(path)
    path = write(tmp_path, MINIMAL + "\n[conform]\ntimout = 3\n", "typo.toml")
    assert "conform.timout: unknown key; did you mean timeout?" in error_of(path)


# ------------------------------------------------------------ overrides and flags


def test_set_overrides_parse_toml_values(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    p = load_profile(
        path,
        [
            "workload.sessions=7",
            "smtp.pipelining=off",
            'message.subject="hello {n}"',
            "message.recipients={min=2, max=4}",
            "workload.think_time=250ms",
            "message.headers.X-Run=nightly",
        ],
    )
    assert p.workload.sessions == 7 and p.smtp.pipelining == "off" and p.message.subject == "hello {n}"
    assert (p.message.recipients_min, p.message.recipients_max) == (2, 4)
    assert p.workload.think_time == 0.25 and p.message.headers == {"X-Run": "nightly"}
    assert p.raw["workload"]["sessions"] == 7


def test_later_set_wins_and_flags_win_over_set(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    p = load_profile(
        path,
        ["workload.duration=1m", "workload.duration=2m", "output.results_dir=a"],
        duration="90s",
        results_dir="out",
    )
    assert p.workload.duration == 90.0 and p.output.results_dir == "out"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("mx.example:25", "mx.example", 25), ("[::1]:2525", "::1", 2525), ("127.0.0.1:1", "127.0.0.1", 1)],
)
def test_parse_target(text: str, host: str, port: int) -> None:
    assert parse_target(text) == (host, port)


@pytest.mark.parametrize(
    "bad", ["", "host", "host:", ":25", "host:0", "host:65536", "host:x", "::1:25", "[::1]", "[::1]25", "a b:25"]
)
def test_parse_target_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"--target"):
        parse_target(bad)


def test_target_flag_turns_embedded_profile_external() -> None:
    p = load_profile(str(PROFILES / "smoke.toml"), target="[::1]:2525")
    assert (p.target.host, p.target.port, p.target.embedded) == ("::1", 2525, False)
    assert p.target.sink.to_cli_args() == []


# ------------------------------------------------------------ error classes


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[workload]\nsessions = 2\nduration = "10s\n')
    message = error_of(path)
    assert re.match(rf"^{re.escape(path)}:3:\d+: TOML syntax error", message), message


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    assert error_of(path) == f"{path}: file not found; check the path"


def test_directory_and_binary_files(tmp_path: Path) -> None:
    assert "directory" in error_of(str(tmp_path))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "UTF-8" in error_of(str(binary))


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("workload.sesions=3", "workload.sesions", "did you mean sessions?"),
        ("messge.size=1", "messge", "did you mean message?"),
        ("target.hots=x", "target.hots", "did you mean host?"),
        ("smtp.timeouts.dataend=1s", "smtp.timeouts.dataend", "did you mean data_end?"),
        ("workload.model=opne", "workload.model", "did you mean open?"),
    ],
)
def test_unknown_keys_suggest_the_right_one(tmp_path: Path, override: str, key: str, fragment: str) -> None:
    message = error_of(write(tmp_path, MINIMAL), override)
    assert f": {key}: " in message and fragment in message


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ('workload.sessions="ten"', "workload.sessions", "an integer"),
        ("workload.sessions=2.5", "workload.sessions", "an integer"),
        ("workload.sessions=true", "workload.sessions", "an integer"),
        ("target.port=70000", "target.port", "between 1 and 65535"),
        ("target.port=0", "target.port", "between 1 and 65535"),
        ("workload.sessions=0", "workload.sessions", "between 1 and"),
        ("workload.duration=0", "workload.duration", "positive duration"),
        ("workload.duration=-5s", "workload.duration", "positive duration"),
        ("workload.duration=soon", "workload.duration", "positive duration"),
        ("target.embedded=yes", "target.embedded", "true or false"),
        ("target.tls=ssl", "target.tls", "one of none, starttls, implicit"),
        ("smtp.timeouts.rcpt=0", "smtp.timeouts.rcpt", "positive duration"),
        ("message.size=big", "message.size", "KiB"),
        ("message.size=2GiB", "message.size", "at most 1GiB"),
        ("message.recipients=0", "message.recipients", "between 1 and 1000"),
        ("message.recipients=1001", "message.recipients", "between 1 and 1000"),
        ("message.variants=0", "message.variants", "between 1 and"),
        ("output.progress=fancy", "output.progress", "one of auto, live, plain, none"),
        ("output.interval=0", "output.interval", "positive duration"),
        ("workload=3", "workload", "a table"),
        ("workload.seed=-1", "workload.seed", "an integer"),
    ],
)
def test_wrong_types_and_ranges_name_key_and_expectation(
    tmp_path: Path, override: str, key: str, expected: str
) -> None:
    message = error_of(write(tmp_path, MINIMAL), override)
    assert f": {key}: " in message and expected in message, message
    assert f"(--set {override})" in message


def test_negative_rate_in_open_model(tmp_path: Path) -> None:
    message = error_of(str(PROFILES / "open-rate.toml"), "workload.rate=-5")
    assert "workload.rate: -5 is out of range" in message and "positive number" in message


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["workload.model=open", "workload.rate=5"], "workload.sessions", "only applies to the closed model"),
        (["workload.rate=5"], "workload.rate", "only applies to the open model"),
        (['workload.stages=[{duration="5s", target=3}]'], "workload.duration", "mutually exclusive"),
        (["message.size={distribution='uniform', min='2KiB', max='1KiB'}"], "message.size.max", "below min"),
        (["message.recipients={min=5, max=2}"], "message.recipients.max", "below min"),
        (
            ["message.size={distribution='lognormal', median='10KiB', max='1KiB'}"],
            "message.size.max",
            "below the median",
        ),
        (["target.insecure=true"], "target.insecure", "only applies with tls"),
        (
            ["target.tls='starttls'", "target.insecure=true", "target.ca_file='x.pem'"],
            "target.insecure",
            "contradicts ca_file",
        ),
        (["target.sink.seed=1"], "target.sink", "only applies with embedded = true"),
        (["target.embedded=true"], "target.host", "not allowed with embedded = true"),
        (["message.from=a{x}@example.test"], "message.from", "unknown placeholder {x}"),
        (["message.to=user{}@example.test"], "message.to", "unknown placeholder {}"),
        (["message.to='no-at-sign'"], "message.to", "not an address"),
        (["message.subject='{n'"], "message.subject", "bad template"),
        (["message.headers.Subject=x"], "message.headers.Subject", "use message.subject"),
        (
            ['workload.stages=[{duration="5s", target=0}]', "workload.duration=''"],
            "workload.duration",
            "positive duration",
        ),
    ],
)
def test_contradictions(tmp_path: Path, overrides: list[str], key: str, fragment: str) -> None:
    message = error_of(write(tmp_path, MINIMAL), *overrides)
    assert f"{key}: " in message and fragment in message, message


def test_model_needs_its_size_of_load(tmp_path: Path) -> None:
    closed = write(tmp_path, '[workload]\nduration = "5s"\n', "closed.toml")
    assert "workload.sessions: is required for the closed model" in error_of(closed)
    opened = write(tmp_path, '[workload]\nmodel = "open"\nduration = "5s"\n', "open.toml")
    assert "workload.rate: is required for the open model" in error_of(opened)
    endless = write(tmp_path, "[workload]\nsessions = 3\n", "endless.toml")
    assert "workload: needs at least one of duration, messages or stages" in error_of(endless)
    idle = write(tmp_path, '[workload]\nmodel = "open"\nstages = [{duration = "5s", target = 0}]\n', "idle.toml")
    assert "no session would ever start" in error_of(idle)


def test_stage_errors_name_the_stage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[workload]\nmodel = "open"\nstages = [{duration = "5s", target = 10}, {duration = "5s", taget = 1}]\n',
    )
    assert "workload.stages[1].taget: unknown key; did you mean target?" in error_of(path)
    path = write(tmp_path, '[workload]\nstages = [{duration = "5s", target = 1.5}]\n', "closed.toml")
    assert "workload.stages[0].target: got a float 1.5" in error_of(path)


def test_bad_override_forms(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert "has no '='" in error_of(path, "workload.sessions")
    assert "bad key path" in error_of(path, "workload..sessions=1")
    assert "is an integer, not a table" in error_of(path, "workload.sessions.x=1")


def test_inline_password_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[target.auth]\nusername = "bob"\npassword = "hunter2"\n')
    message = error_of(path)
    assert "target.auth.password: passwords are never written in a profile" in message
    assert "password_env" in message and "hunter2" not in message


# ------------------------------------------------------------ auth and sink


def test_auth_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        MINIMAL + '\n[target.auth]\nusername = "bob"\npassword_env = "SMTPBENCH_TEST_PW"\nmechanism = "login"\n',
    )
    auth = load_profile(path).target.auth
    assert auth is not None and auth.mechanism == "LOGIN"
    monkeypatch.delenv("SMTPBENCH_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match="SMTPBENCH_TEST_PW is not set"):
        auth.password()
    monkeypatch.setenv("SMTPBENCH_TEST_PW", "s3cret")
    assert auth.password() == "s3cret"
    secret = tmp_path / "pw.txt"
    file_auth = auth.model_copy(update={"password_env": None, "password_file": str(secret)})
    with pytest.raises(ConfigError, match="cannot read password file"):
        file_auth.password()
    secret.write_text("from-file\n", encoding="utf-8")
    assert file_auth.password() == "from-file"


def test_auth_needs_exactly_one_password_source(tmp_path: Path) -> None:
    both = MINIMAL + '\n[target.auth]\nusername = "bob"\npassword_env = "A"\npassword_file = "f"\n'
    assert "exactly one of password_env and password_file" in error_of(write(tmp_path, both))
    bad_env = MINIMAL + '\n[target.auth]\nusername = "bob"\npassword_env = "NOT A NAME"\n'
    assert "not an environment variable name" in error_of(write(tmp_path, bad_env, "b.toml"))


def test_resolved_profile_redacts_secrets(tmp_path: Path) -> None:
    # The schema refuses every secret-named key now; the dump still redacts, should one ever get in.
    profile = load_profile(write(tmp_path, MINIMAL))
    profile = profile.model_copy(update={"conform": {"token": "abc", "login": {"Password": "pw", "user": "u"}}})
    text = resolved_toml(profile)
    assert "abc" not in text and '"pw"' not in text and 'user = "u"' in text
    assert text.count('"***"') == 2


def test_sink_delays_are_the_sinks_phases() -> None:
    """[target.sink.delay] offers a key for every delay ``smtpbench sink`` has (--delay-PHASE), no other."""
    from smtpbench.load.target_section import SinkDelays
    from smtpbench.sink.config import PHASES

    assert tuple(SinkDelays.model_fields) == PHASES


def test_sink_options_become_sink_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [target]
        embedded = true
        [target.sink]
        delay = { banner = "1s", data_end = "20ms", quit = "250ms" }
        reject_rcpt_temp = 0.1
        reject_data_perm = "5%"
        disconnect = 0.01
        seed = 42
        [workload]
        sessions = 1
        duration = "1s"
        """,
    )
    p = load_profile(path)
    assert (p.target.host, p.target.port) == ("127.0.0.1", 0)
    assert p.target.sink.to_cli_args() == [
        "--delay-banner", "1s",
        "--delay-data-end", "20ms",
        "--delay-quit", "250ms",
        "--reject-rcpt-temp", "0.1",
        "--reject-data-perm", "0.05",
        "--disconnect", "0.01",
        "--seed", "42",
    ]  # fmt: skip


def test_sink_seed_defaults_to_workload_seed_and_ratios_are_checked() -> None:
    smoke = str(PROFILES / "smoke.toml")
    p = load_profile(smoke, ["workload.seed=99"])
    assert p.target.sink.seed == 99 and p.target.sink.to_cli_args()[-2:] == ["--seed", "99"]
    message = error_of(smoke, "target.sink.reject_rcpt_temp=0.7", "target.sink.reject_rcpt_perm=0.5")
    assert "exceed 1" in message
    assert "did you mean data_end?" in error_of(smoke, "target.sink.delay.dataend=1s")
    assert "plain SMTP only" in error_of(smoke, "target.tls=starttls")


# ------------------------------------------------------------ sizes


def test_size_specs_sample_within_bounds(tmp_path: Path) -> None:
    rng = random.Random(1)
    base = write(tmp_path, MINIMAL)
    uniform = load_profile(base, ["message.size={distribution='uniform', min='1KiB', max='4KiB'}"]).message.size
    assert uniform == UniformSize(1024, 4096)
    assert all(1024 <= uniform.sample(rng) <= 4096 for _ in range(1000))
    logn = load_profile(
        base, ["message.size={distribution='lognormal', median='10KiB', sigma=1.0, max='1MiB'}"]
    ).message.size
    assert isinstance(logn, LognormalSize) and logn.upper_bound() == 1024**2
    samples = sorted(logn.sample(rng) for _ in range(4001))
    assert all(0 <= s <= 1024**2 for s in samples)
    assert 8 * 1024 < samples[2000] < 12 * 1024  # the median lands near 10 KiB
    weighted = load_profile(base, ["message.size=[{size='1KiB', weight=70}, {size='100KiB', weight=30}]"]).message.size
    assert weighted == WeightedSize(((1024, 70.0), (102400, 30.0)))
    draws = [weighted.sample(rng) for _ in range(4000)]
    assert set(draws) == {1024, 102400} and 0.65 < draws.count(1024) / len(draws) < 0.75
    assert weighted.describe() == "70% 1KiB, 30% 100KiB"
    assert uniform.describe() == "uniform 1KiB..4KiB"


@pytest.mark.parametrize(
    "name", ["client.example", "localhost", "[192.0.2.1]", "[IPv6:2001:db8::1]", "xn--bcher-kva.example"]
)
def test_helo_takes_a_domain_or_an_address_literal(name: str) -> None:
    assert load_profile(str(PROFILES / "smoke.toml"), [f'target.helo="{name}"']).target.helo == name


@pytest.mark.parametrize("name", ["a..b", "-a.example", "a_b.example", "bücher.example", "[192.0.2.300]", "a.example."])
def test_helo_that_a_server_must_refuse_is_refused_before_the_run(name: str) -> None:
    """Every session would fail with 501 (our sink's answer to a bad EHLO argument): one line before any traffic."""
    message = error_of(str(PROFILES / "smoke.toml"), f'target.helo="{name}"')
    assert "target.helo" in message and "neither a domain nor an address literal (RFC 5321 4.1.1.1)" in message
    assert ("A-label" in message) == (not name.isascii())


@pytest.mark.parametrize(
    ("template", "part"),
    [
        ("a..b{n}@example.test", "local part 'a..b1'"),
        (".a{n}@example.test", "local part '.a1'"),
        ("u{n}@-bad.example", "domain '-bad.example'"),
        ("u{n}@[192.0.2.300]", "domain '[192.0.2.300]'"),
        ("u{n}@a..example", "domain 'a..example'"),
    ],
)
def test_address_that_a_server_must_refuse_is_refused_before_the_run(template: str, part: str) -> None:
    """Every message would get 501/553: the rendered sample names the bad part and the RFC's section."""
    message = error_of(str(PROFILES / "smoke.toml"), f'message.to="{template}"')
    assert "message.to" in message and f"the {part} is not RFC 5321's (4.1.2)" in message


@pytest.mark.parametrize(
    "template", ["first.last{n}@example.test", "u+tag{n}@[192.0.2.1]", '"q{n}"@example.test', "ü{n}@bücher.example"]
)
def test_rfc_5321_and_6531_addresses_load(template: str) -> None:
    assert load_profile(str(PROFILES / "smoke.toml"), [f"message.to='{template}'"]).message.toml()["to"] == template
