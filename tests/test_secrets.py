"""Passwords come from the environment or a file and never leak into results, output or reports.

Each test authenticates for real against a loopback server that checks the
credentials (so the secret demonstrably reached the wire), then searches every
file the run wrote, stdout and stderr for the secret in clear and in every
base64 form an SMTP AUTH exchange could carry it.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_RUN_ERROR, EXIT_USAGE
from tests.hostile import HostileServer, MiniSMTP, cli_argv, only_run_dir, write_profile

USER = "bench-user"
SECRET = "s3cr3t-Pa55w0rd-7f3a"


def secret_forms(user: str = USER, secret: str = SECRET) -> list[str]:
    """The secret as text and as every base64 token AUTH PLAIN/LOGIN would send."""
    forms = [secret]
    for raw in (secret, f"\0{user}\0{secret}", f"{user}\0{secret}", f"\0{secret}"):
        token = base64.b64encode(raw.encode()).decode()
        forms += [token, token.rstrip("=")]
    return forms


def assert_absent(texts: dict[str, str]) -> None:
    """No form of the secret occurs in any of ``texts`` (name -> content)."""
    for name, text in texts.items():
        for form in secret_forms():
            assert form not in text, f"secret form {form!r} found in {name}"


def files_under(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, read as text (bytes decoded leniently)."""
    out = {}
    for p in folder.rglob("*"):
        if p.is_file():
            out[str(p)] = p.read_bytes().decode("utf-8", "replace")
    assert out, f"no files under {folder}"
    return out


def run_with_auth(tmp_path: Path, server: MiniSMTP, auth_table: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``smtpbench run`` (subprocess, 1 s) with ``[target.auth]``; returns (exit code, stdout, stderr)."""
    with HostileServer(server) as srv:
        profile = write_profile(
            str(tmp_path), srv.target, duration="1s", grace="1s", timeout="2s", extra=f"\n{auth_table}\n"
        )
        proc = subprocess.run(
            [*cli_argv(), "run", profile, "--progress", "plain"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_password_from_env_never_written(tmp_path: Path, mechanism: str) -> None:
    server = MiniSMTP(auth=(USER, SECRET))
    auth = f'[target.auth]\nusername = "{USER}"\npassword_env = "SMTPBENCH_TEST_SECRET"\nmechanism = "{mechanism}"\n'
    code, out, err = run_with_auth(tmp_path, server, auth, {"SMTPBENCH_TEST_SECRET": SECRET})
    assert code == 0, err
    assert server.auth_ok > 0 and server.auth_bad == 0, "the password must reach the server intact"
    run = Path(only_run_dir(str(tmp_path)))
    assert (run / "summary.json").exists() and (run / "profile.toml").exists()
    assert "SMTPBENCH_TEST_SECRET" in (run / "profile.toml").read_text()  # the reference is kept, not the value
    assert_absent({"stdout": out, "stderr": err, **files_under(run)})


def test_password_from_file_never_written(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    server = MiniSMTP(auth=(USER, SECRET))
    auth = f'[target.auth]\nusername = "{USER}"\npassword_file = "{secret_file}"\n'
    code, out, err = run_with_auth(tmp_path, server, auth, {})
    assert code == 0, err
    assert server.auth_ok > 0 and server.auth_bad == 0
    assert_absent({"stdout": out, "stderr": err, **files_under(Path(only_run_dir(str(tmp_path))))})


def test_rejected_password_not_echoed(tmp_path: Path) -> None:
    server = MiniSMTP(auth=(USER, "another-password"))
    auth = f'[target.auth]\nusername = "{USER}"\npassword_env = "SMTPBENCH_TEST_SECRET"\n'
    code, out, err = run_with_auth(tmp_path, server, auth, {"SMTPBENCH_TEST_SECRET": SECRET})
    # Every session fails at AUTH, so the run itself failed (issue 8): exit 3, saying why, without the secret.
    # A refused AUTH is its own error kind, "auth" (issue 11), not a message's perm_fail.
    assert code == EXIT_RUN_ERROR, err
    assert "run failed: no session completed" in err and "auth" in err
    assert server.auth_bad > 0 and server.auth_ok == 0
    run = Path(only_run_dir(str(tmp_path)))
    assert '"auth"' in (run / "summary.json").read_text()
    assert_absent({"stdout": out, "stderr": err, **files_under(run)})


def refused_run(profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``smtpbench run`` expected to stop at validation."""
    proc = subprocess.run([*cli_argv(), "run", profile, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_password_in_profile_is_refused_without_echo(tmp_path: Path) -> None:
    auth = f'\n[target.auth]\nusername = "{USER}"\npassword = "{SECRET}"\n'
    profile = write_profile(str(tmp_path), "127.0.0.1:2525", extra=auth)
    proc = refused_run(profile)
    assert "target.auth.password" in proc.stderr
    assert_absent({"stdout": proc.stdout, "stderr": proc.stderr})
    assert not (tmp_path / "results").exists()


def test_password_given_with_set_is_refused_without_echo(tmp_path: Path) -> None:
    profile = write_profile(str(tmp_path), "127.0.0.1:2525", extra=f'\n[target.auth]\nusername = "{USER}"\n')
    proc = refused_run(profile, "--set", f"target.auth.password={SECRET}")
    assert_absent({"stdout": proc.stdout, "stderr": proc.stderr})


def test_conform_reports_hold_no_secret(tmp_path: Path) -> None:
    server = MiniSMTP(auth=(USER, SECRET))
    transcripts = tmp_path / "transcripts"
    report = tmp_path / "report.json"
    with HostileServer(server) as srv:
        proc = subprocess.run(
            [
                *cli_argv(),
                "conform",
                srv.target,
                "--user",
                USER,
                "--only",
                "U",
                "--timeout",
                "1",
                "--json",
                str(report),
                "--transcript",
                str(transcripts),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SMTPBENCH_PASSWORD": SECRET},
        )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    assert server.auth_ok > 0, "conform must have authenticated with the real password"
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "report.json": report.read_text()}
    texts.update(files_under(transcripts))
    assert_absent(texts)
