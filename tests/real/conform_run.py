"""Running the whole conformance suite against a real server of the tier (shared by the calibration test).

``CONFIGS`` names the calibrated configurations: each is a server kind with its start options and the
expectation file ``tests/real/expected/<name>.toml`` its verdicts are compared with.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from smtpbench.conform.checks import select
from smtpbench.conform.model import CheckResult
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.oracle import normalise
from smtpbench.conform.runner import Runner
from tests.real.servers import LOCAL_DOMAIN, RealServer

EXPECTED = Path(__file__).parent / "expected"

#: name -> (kind, start options).  Every server runs with STARTTLS (a trustme certificate the run does not
#: trust: opportunistic TLS, as between MTAs) so that the TLS checks run too.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "postfix": ("postfix", {"tls": True, "main_cf": {"smtpd_forbid_bare_newline": "yes"}}),
    "postfix-bare-newline-no": ("postfix", {"tls": True, "main_cf": {"smtpd_forbid_bare_newline": "no"}}),
    "exim": ("exim", {"tls": True}),
    "opensmtpd": ("opensmtpd", {"tls": True}),
}


def run_all(server: RealServer) -> tuple[list[CheckResult], str | None]:
    """Every check against ``server`` (``--rcpt user@example.test``, its maildir as the delivery oracle)."""
    import trio

    options = ConformOptions(
        host=server.host,
        port=server.port,
        rcpt=f"user@{LOCAL_DOMAIN}",
        # Generous: the tier runs beside the rest of the suite on a loaded 2-core machine (3x headroom and more).
        timeout=30.0,
        check_timeout=300.0,
        quiet_wait=0.5,
    )
    runner = Runner(options, lambda: [normalise(m) for m in server.delivered()])
    results = trio.run(runner.run, select())
    return results, runner.server


def load_expected(name: str) -> dict[str, dict[str, str]]:
    """``tests/real/expected/<name>.toml``: check id -> {verdict, why[, rfc, sentence]}."""
    data = tomllib.loads((EXPECTED / f"{name}.toml").read_text("utf-8"))
    return {cid: entry for cid, entry in data.get("checks", {}).items()}
