"""Property tests: whatever a profile contains, loading it returns a Profile or a one-line ConfigError.

Inputs start from the shipped profiles and mutate keys, values and types, or
are random TOML-ish text; valid results must survive the resolved-profile
round trip unchanged.
"""

from __future__ import annotations

import copy
import datetime
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smtpbench.config import apply_override, dump_toml, redact
from smtpbench.errors import ConfigError
from smtpbench.load.profile import Profile, load_profile, profile_from_dict, profile_to_dict, resolved_toml
from smtpbench.units import format_duration

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
SHIPPED = {p.name: tomllib.loads(p.read_text("utf-8")) for p in sorted(PROFILES.glob("*.toml"))}
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY_NAMES = [
    "host", "port", "helo", "embedded", "tls", "ca_file", "insecure", "auth", "sink", "delay", "seed",
    "pipelining", "timeouts", "connect", "data_end", "model", "sessions", "rate", "arrival", "max_in_flight",
    "duration", "messages", "messages_per_session", "think_time", "grace", "stages", "target", "size",
    "distribution", "min", "max", "median", "sigma", "weight", "recipients", "from", "to", "subject", "variants",
    "headers", "results_dir", "progress", "interval", "password", "password_env", "username", "reject_rcpt_temp",
]  # fmt: skip
INTERESTING_TEXT = [
    "30s", "0s", "-1s", "1m30s", "250ms", "1e3", "", " ", "5%", "150%", "1KiB", "2GiB", "1.5KB", "open", "closed",
    "poisson", "uniform", "lognormal", "auto", "on", "off", "none", "starttls", "implicit", "live", "{n}", "{x}",
    "a{n}@b.example", "user@", "@", "{", "}", "\n", "\x00", "é", "127.0.0.1", "::1", "PLAIN", "LOGIN",
]  # fmt: skip

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, 25, 65535, 65536, 1000, 1001, 10**6, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(INTERESTING_TEXT),
    st.dates(),
    st.times(),
    st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1)),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEY_NAMES), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=8,
)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (dict keys and list indexes) inside ``node``."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        found.append((*prefix, k))
        found.extend(paths_of(v, (*prefix, k)))
    return found


def mutate(data: dict[str, Any], draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    """Apply one random change: replace a value, delete or rename a key, or add one."""
    paths = paths_of(data)
    path = draw(st.sampled_from(paths))
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    op = draw(st.sampled_from(["replace", "delete", "rename", "add"]))
    if op == "replace":
        parent[last] = draw(toml_values)
    elif op == "delete":
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(st.sampled_from(KEY_NAMES))] = parent.pop(last)
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(KEY_NAMES))] = draw(toml_values)


def check_outcome(load: Any) -> Profile | None:
    """Run ``load``; it must return a Profile or raise a useful one-line ConfigError."""
    try:
        profile = load()
    except ConfigError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message and "\r" not in message
        assert exc.file or exc.key, message
        assert "Traceback" not in message
        event("ConfigError")
        return None
    assert isinstance(profile, Profile)
    event("valid profile")
    return profile


def assert_round_trips(profile: Profile) -> None:
    again = profile_from_dict(tomllib.loads(dump_toml(profile_to_dict(profile))), "resolved")
    for name in ("target", "smtp", "workload", "message", "output", "conform"):
        assert getattr(again, name) == getattr(profile, name), name
    tomllib.loads(resolved_toml(profile))


@FAST
@given(st.sampled_from(sorted(SHIPPED)), st.integers(min_value=1, max_value=3), st.data())
def test_mutated_shipped_profiles_load_or_fail_cleanly(name: str, rounds: int, data: st.DataObject) -> None:
    profile_data = copy.deepcopy(SHIPPED[name])
    for _ in range(rounds):
        if paths_of(profile_data):
            mutate(profile_data, data.draw)
    profile = check_outcome(lambda: profile_from_dict(profile_data, name))
    if profile is not None:
        assert_round_trips(profile)


@FAST
@given(
    st.sampled_from(sorted(SHIPPED)),
    st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(["target", "workload", "message", "smtp", "output", *KEY_NAMES]), min_size=1, max_size=3
            ),
            st.one_of(
                st.sampled_from(INTERESTING_TEXT),
                st.text(max_size=15),
                st.from_regex(r"[0-9a-z.{}=\[\]\"', %-]{0,15}", fullmatch=True),
            ),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_random_set_overrides_load_or_fail_cleanly(name: str, assignments: list[tuple[list[str], str]]) -> None:
    overrides = [".".join(keys) + "=" + value for keys, value in assignments]
    profile = check_outcome(lambda: load_profile(str(PROFILES / name), overrides))
    if profile is not None:
        assert_round_trips(profile)


TOML_ISH = st.lists(
    st.one_of(
        st.sampled_from(
            ["[target]", "[workload]", "[message]", "[smtp.timeouts]", "[[workload.stages]]", "[output]", "[x.y]"]
        ),
        st.builds(
            lambda k, v: f"{k} = {v}",
            st.sampled_from(KEY_NAMES),
            st.one_of(
                st.sampled_from(
                    [
                        '"30s"',
                        "5",
                        "-1",
                        "0",
                        "1.5",
                        "true",
                        '"open"',
                        '"closed"',
                        '"1KiB"',
                        "[1, 2]",
                        "{min=1, max=0}",
                        "inf",
                        "nan",
                        '"{n}@x"',
                        '"a',
                        "1979-05-27",
                    ]
                ),
                st.text(max_size=10),
            ),
        ),
        st.text(max_size=20),
    ),
    max_size=12,
)


@FAST
@given(TOML_ISH)
def test_random_toml_ish_text_loads_or_fails_cleanly(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.toml"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogatepass"))
    profile = check_outcome(lambda: load_profile(str(path)))
    if profile is not None:
        assert_round_trips(profile)


@FAST
@given(st.dictionaries(st.text(max_size=8), toml_values, max_size=6))
def test_dump_toml_round_trips_through_tomllib(data: dict[str, Any]) -> None:
    loaded = tomllib.loads(dump_toml(data))
    if not _has_nan(data):  # nan != nan, so only the parse itself is checked then
        assert loaded == data


@FAST
@given(st.dictionaries(st.sampled_from(KEY_NAMES), toml_values, max_size=4), st.text(max_size=10))
def test_apply_override_never_raises_anything_but_config_error(data: dict[str, Any], assignment: str) -> None:
    try:
        apply_override(data, assignment)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FAST
@given(toml_values)
def test_redact_hides_every_secret(value: Any) -> None:
    tree = {"a": {"password": value, "Token": value, "api_secret": value, "keep": 1}, "list": [{"pass": value}]}
    out = redact(tree)
    assert out["a"] == {"password": "***", "Token": "***", "api_secret": "***", "keep": 1}
    assert out["list"] == [{"pass": "***"}]


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


durations = st.one_of(
    st.sampled_from(['"1s"', '"250ms"', '"1m30s"', '"2h"', "0", "5", "0.5", '"0s"']),
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: f'"{format_duration(x)}"'),
)
sizes = st.one_of(
    st.integers(min_value=0, max_value=2**21).map(str),
    st.sampled_from(['"1KiB"', '"1.5KB"', '"10MiB"', '{distribution="uniform", min="1KiB", max="2KiB"}']),
    st.builds(
        lambda median, sigma: f'{{distribution="lognormal", median={median}, sigma={sigma}}}',
        st.integers(min_value=1, max_value=2**20),
        st.floats(min_value=0.01, max_value=10),
    ),
    st.lists(st.integers(min_value=0, max_value=2**20), min_size=1, max_size=3).map(
        lambda xs: "[" + ", ".join(f"{{size={x}, weight={i + 1}}}" for i, x in enumerate(xs)) + "]"
    ),
)
PLAUSIBLE = st.one_of(
    st.tuples(
        st.sampled_from(["workload.duration", "workload.think_time", "workload.grace", "output.interval"]), durations
    ),
    st.tuples(st.sampled_from([f"smtp.timeouts.{k}" for k in ("connect", "data_end", "ehlo", "quit")]), durations),
    st.tuples(st.just("message.size"), sizes),
    st.tuples(
        st.sampled_from(["workload.sessions", "workload.messages", "workload.messages_per_session"]),
        st.integers(0, 10**6).map(str),
    ),
    st.tuples(st.just("workload.rate"), st.floats(min_value=0, max_value=1e6).map(repr)),
    st.tuples(st.just("message.recipients"), st.integers(0, 1001).map(str)),
    st.tuples(st.just("target.port"), st.integers(0, 70000).map(str)),
    st.tuples(st.just("workload.seed"), st.integers(0, 2**63 - 1).map(str)),
    st.tuples(
        st.sampled_from(["message.from", "message.to", "message.subject"]),
        st.sampled_from(['"u{n}.{session}.{worker}@x.test"', '"{rcpt:03d}@x"', '"s {n}"', '"{{n}}@x"']),
    ),
    st.tuples(st.just("smtp.pipelining"), st.sampled_from(["auto", "on", "off", "maybe"])),
)


@FAST
@given(st.sampled_from(sorted(SHIPPED)), st.lists(PLAUSIBLE, min_size=1, max_size=4))
def test_plausible_overrides_round_trip(name: str, assignments: list[tuple[str, str]]) -> None:
    profile = check_outcome(lambda: load_profile(str(PROFILES / name), [f"{k}={v}" for k, v in assignments]))
    if profile is not None:
        assert_round_trips(profile)
