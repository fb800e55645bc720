"""``--help`` prints every option's text intact (no markup eats "[target]"), and ``--version`` works."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata

import pytest
import typer
from typer.testing import CliRunner

from smtpbench.cli import DISTRIBUTION
from tests.hostile import cli_argv, full_cli_available, make_app


def words(text: str) -> str:
    """Text with every run of whitespace made one space (help wraps lines)."""
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["run", "conform", "sink"])
def test_help_prints_every_option_text_intact(command: str) -> None:
    app = make_app()
    group = typer.main.get_command(app)
    sub = getattr(group, "commands", {}).get(command)
    if sub is None:
        pytest.skip(f"{command} is not part of this build")
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    shown = words(result.output)
    texts = [p.help for p in sub.params if getattr(p, "help", None)]
    assert texts
    for text in texts:
        assert words(text) in shown, (text, result.output)


def test_run_help_keeps_bracketed_words() -> None:
    result = CliRunner().invoke(make_app(), ["run", "--help"], terminal_width=100)
    shown = words(result.output)
    assert "HOST:PORT, overrides [target]." in shown
    assert "(overrides [output].progress)" in shown


@pytest.mark.skipif(not full_cli_available(), reason="needs the whole CLI")
def test_version_from_package_metadata() -> None:
    expected = f"smtpbench {metadata.version(DISTRIBUTION)}"
    result = CliRunner().invoke(make_app(), ["--version"])
    assert result.exit_code == 0 and result.output.strip() == expected
    # And as a real process, as a user types it.
    proc = subprocess.run([*cli_argv(), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stderr


@pytest.mark.skipif(not full_cli_available(), reason="needs the whole CLI")
def test_probe_help_names_every_mechanism_it_speaks() -> None:
    """probe --help lists the mechanisms --auth-mechanism takes (it said 'PLAIN or LOGIN', refusing none of the
    four others), and that --timeout bounds the connect and the handshake as well as each reply."""
    from smtpbench.protocol.sasl import MECHANISMS

    proc = subprocess.run(
        [*cli_argv(), "probe", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    shown = words(proc.stdout)
    mechanisms = shown.split("--auth-mechanism", 1)[1].split("--header", 1)[0]
    assert all(m in mechanisms for m in MECHANISMS), mechanisms
    assert "the connect, the TLS handshake and each reply" in shown
