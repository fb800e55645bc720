"""The generic config helpers (smtpbench.config) and how `smtpbench run` reports profile errors."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from smtpbench.config import (
    apply_override,
    did_you_mean,
    dump_toml,
    load_toml,
    parse_override_value,
    parse_toml_text,
    redact,
)
from smtpbench.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("true", True),
        ('"x"', "x"),
        ("x", "x"),
        ("[1,2]", [1, 2]),
        ("{a = 1}", {"a": 1}),
        ("30s", "30s"),
        ("1.5", 1.5),
        ("", ""),
        ("  spaced  ", "spaced"),
        ("1\nother = 2", "1\nother = 2"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_override_values_are_toml_when_they_parse(text: str, value: object) -> None:
    assert parse_override_value(text) == value


def test_apply_override_creates_tables_and_refuses_bad_forms() -> None:
    data: dict[str, object] = {"workload": {"sessions": 1}}
    assert apply_override(data, "workload.sessions=5") == ["workload", "sessions"]
    apply_override(data, "smtp.timeouts.connect=5s")
    assert data == {"workload": {"sessions": 5}, "smtp": {"timeouts": {"connect": "5s"}}}
    for bad in ("noequals", "=5", "a..b=1", "a b=1", ".a=1"):
        with pytest.raises(ConfigError):
            apply_override(data, bad)
    with pytest.raises(ConfigError, match="workload.sessions is an integer, not a table"):
        apply_override(data, "workload.sessions.deep=1")


def test_syntax_errors_carry_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml_text("a = 1\nb = [1,\n", None)
    assert str(info.value).startswith("line 3, column 1: TOML syntax error")
    path = tmp_path / "bad.toml"
    path.write_text("[x]\ny = = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:2:5: TOML syntax error: "):
        load_toml(path)


def test_did_you_mean() -> None:
    choices = ["sessions", "rate", "duration", "messages_per_session"]
    assert did_you_mean("sesions", choices) == "sessions"
    assert did_you_mean("Rate", choices) == "rate"
    assert did_you_mean("durtion", choices) == "duration"
    assert did_you_mean("zzz", choices) is None


def test_field_types_name_the_full_key() -> None:
    # Issue 9: the hand-written Section getters became pydantic field types (smtpbench.fields); same messages.
    from typing import Annotated

    from pydantic import Field, ValidationError

    from smtpbench.fields import Bool, Table, choice, config_error, number, whole

    class Inner(Table):
        x: Annotated[int, whole()] = 0

    class Workload(Table):
        n: Annotated[int, whole(1, 3)] = 1
        s: Annotated[str, choice("closed", "open")] = "closed"
        b: Bool = False
        f: Annotated[float, number(positive=True)] = 1.0
        g: Annotated[float, number()] = 0.0
        t: Inner = Field(default_factory=dict)
        bad: Annotated[int, whole()] = 0
        required: Annotated[str, choice("a")]
        weir: int = 0

    class File(Table):
        workload: Workload

    def error(data: dict[str, object]) -> str:
        with pytest.raises(ValidationError) as info:
            File.model_validate({"workload": {"required": "a", **data}})
        return str(config_error(info.value, "p.toml"))

    ok = File.model_validate({"workload": {"n": 3, "s": "OPEN", "b": True, "f": 0.5, "t": {"x": 1}, "required": "a"}})
    assert (ok.workload.n, ok.workload.s, ok.workload.b, ok.workload.f, ok.workload.t.x) == (3, "open", True, 0.5, 1)
    assert error({"bad": "1"}) == "p.toml: workload.bad: got a string '1' (expected an integer)"
    assert "workload.n: 5 is out of range (expected an integer between 1 and 3)" in error({"n": 5})
    with pytest.raises(ValidationError) as info:
        File.model_validate({"workload": {}})
    assert "workload.required: is required" in str(config_error(info.value, None))
    assert "workload.g: got a boolean True (expected a number)" in error({"g": True})
    assert error({"weird": 2}) == "p.toml: workload.weird: unknown key; did you mean weir?"
    assert 'workload."a b": unknown key' in error({"a b": 1})


def test_dump_toml_writes_tables_arrays_and_escapes() -> None:
    data = {
        "top": 1,
        "a": {"s": 'quote " back \\ nl \n del \x7f', "l": [1, 2.5, "x"], "stages": [{"d": "1s", "t": 2}], "none": None},
        "a b": {"nested": {"deep": True}},
        "empty": {},
    }
    text = dump_toml(data)
    loaded = tomllib.loads(text)
    del data["a"]["none"]  # type: ignore[attr-defined]
    assert loaded == data


def test_redact_matches_secret_names_only() -> None:
    data = {"password": "p", "PASS": "p", "api_token": "t", "client-secret": "s", "password_env": "PW", "passes": 3}
    assert redact(data) == {
        "password": "***",
        "PASS": "***",
        "api_token": "***",
        "client-secret": "***",
        "password_env": "PW",
        "passes": 3,
    }


RUN_ONLY_LOAD_CLI = (
    "import typer\n"
    "from smtpbench.load import cli\n"
    "app = typer.Typer(pretty_exceptions_enable=False)\n"
    "app.callback()(lambda: None)\n"
    "cli.register(app)\n"
    "app()\n"
)


@pytest.mark.parametrize(
    ("body", "args", "fragment"),
    [
        ("[workload]\nsesions = 3\n", [], "workload.sesions: unknown key; did you mean sessions?"),
        ('[workload]\nsessions = 2\nduration = "5s\n', [], ":3:"),
        (
            '[workload]\nsessions = 2\nduration = "5s"\n',
            ["--set", "target.port=70000"],
            "target.port: 70000 is out of range",
        ),
        ('[workload]\nsessions = 2\nduration = "5s"\n', ["--target", "::1:25"], "--target"),
        ('[workload]\nsessions = 2\nduration = "5s"\n', ["--duration", "soon"], "workload.duration"),
    ],
)
def test_run_reports_profile_errors_in_one_line_with_exit_2(
    tmp_path: Path, body: str, args: list[str], fragment: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", RUN_ONLY_LOAD_CLI, "run", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
