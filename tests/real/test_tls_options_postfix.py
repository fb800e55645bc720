"""``[target.tls_options]`` against a real Postfix (tests/real harness): pinned versions and session resumption.

Postfix, not our code, negotiates the version and decides whether an offered session is resumed (its
``tlsmgr`` shares the session ticket keys between its ``smtpd`` processes); its log, at
``smtpd_tls_loglevel = 1``, names the version of every TLS connection it established.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_OK
from tests.hostile import cli_argv, only_run_dir, write_profile
from tests.real.conftest import Factory
from tests.real.harness import HOSTNAME
from tests.real.servers import LOCAL_DOMAIN

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_pinned_version_and_resumption_against_postfix(real_factory: Factory, tmp_path: Path, version: str) -> None:
    server = real_factory("postfix", tls=True, main_cf={"smtpd_tls_loglevel": "1"})
    assert server.tls is not None
    options = f'min_version = "{version}"\nmax_version = "{version}"\nsni = "{HOSTNAME}"\nresume = 1.0'
    profile = write_profile(
        str(tmp_path),
        server.address,
        duration="2s",
        grace="5s",
        timeout="10s",
        sessions=1,
        tls="starttls",
        target_extra=f'ca_file = "{server.tls.ca}"\n[target.tls_options]\n{options}\n',
    )
    text = Path(profile).read_text().replace("[message]\n", f'[message]\nto = "alice@{LOCAL_DOMAIN}"\n', 1)
    Path(profile).write_text(text.replace('duration = "2s"', 'duration = "2s"\nmessages = 12'))
    proc = subprocess.run(
        [*cli_argv(), "run", profile, "--progress", "none"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    s = json.loads((Path(only_run_dir(str(tmp_path))) / "summary.json").read_text())
    assert not s["errors"], s["errors"]
    n = s["counts"]["sessions_started"]
    tls = s["tls"]
    assert n >= 2 and tls["versions"] == {version: n} and tls["handshakes"] == n
    # One session at a time: every session after the first offers the previous one's session.
    assert tls["resume_offered"] == n - 1
    assert tls["resumed"] == n - 1, tls  # Postfix resumes every one of them
    assert s["phases"]["tls.resumed"]["count"] == tls["resumed"]
    established = server.wait_log(rf"TLS connection established from .*: {version} with cipher", count=n)
    assert len(established) == n
