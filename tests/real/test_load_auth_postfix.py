"""``smtpbench run`` AUTH against a real Postfix with Dovecot SASL (tests/real harness): every password mechanism.

Postfix advertises what Dovecot's auth service offers (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256); Dovecot, not our
code, checks the credentials and, for SCRAM, computes the server signature our client verifies.  A wrong
password is the ``auth`` error kind, and the traces hold no secret.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_OK, EXIT_RUN_ERROR
from tests.hostile import cli_argv, only_run_dir, write_profile
from tests.real.conftest import Factory
from tests.real.servers import LOCAL_DOMAIN
from tests.test_load_auth import no_auth_payloads
from tests.test_secrets import SECRET, USER, files_under

pytestmark = pytest.mark.timeout(180)


def run(tmp_path: Path, target: str, mechanism: str, secret: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path.mkdir()
    profile = write_profile(str(tmp_path), target, duration="1s", grace="5s", timeout="10s", sessions=2)
    with open(profile, "a", encoding="utf-8") as f:
        f.write(
            f'\n[target.auth]\nusername = "{USER}"\nmechanism = "{mechanism}"\npassword_env = "SMTPBENCH_TEST_SECRET"\n'
        )
    text = Path(profile).read_text().replace("[message]\n", f'[message]\nto = "alice@{LOCAL_DOMAIN}"\n', 1)
    Path(profile).write_text(text)
    proc = subprocess.run(
        [*cli_argv(), "run", profile, "--progress", "none", "--trace", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SMTPBENCH_TEST_SECRET": secret},
    )
    return proc, Path(only_run_dir(str(tmp_path)))


def test_every_password_mechanism_against_postfix_dovecot(real_factory: Factory, tmp_path: Path) -> None:
    server = real_factory("postfix", auth=(USER, SECRET))
    for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"):
        proc, rundir = run(tmp_path / mechanism, server.address, mechanism, SECRET)
        assert proc.returncode == EXIT_OK, (mechanism, proc.stderr)
        summary = json.loads((rundir / "summary.json").read_text())
        assert summary["counts"]["sessions_completed"] > 0 and not summary["errors"], (mechanism, summary["errors"])
        assert any((rundir / "traces").iterdir())
        no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)})
    proc, rundir = run(tmp_path / "wrong", server.address, "SCRAM-SHA-256", SECRET + "-wrong")
    assert proc.returncode == EXIT_RUN_ERROR, proc.stderr
    assert set(json.loads((rundir / "summary.json").read_text())["errors"]) == {"auth"}
    assert list((rundir / "traces").glob("*-auth.txt"))
    no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)}, (SECRET + "-wrong",))
