"""TLS at load: STARTTLS and implicit TLS against the sink with a trustme certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sinkutil import SinkThread, tls_pair
from tests.test_engine import run


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_run_over_tls(tmp_path: Path, mode: str) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, implicit_tls=mode == "implicit", store_messages=False) as srv:
        s = run(
            tmp_path,
            srv.port,
            f'tls = "{mode}"\nca_file = "{pair.ca_file}"\nhelo = "client.example"\n'
            "[workload]\nsessions = 3\nmessages = 30\nmessages_per_session = 5\n",
        )
        seen = srv.stats
    assert s["status"] == "completed"
    assert s["counts"]["messages_accepted"] == 30
    assert s["counts"]["errors"] == 0
    assert s["phases"]["tls"]["count"] == s["counts"]["sessions_started"]
    if mode == "starttls":
        assert s["replies"]["STARTTLS"]["220"] == s["counts"]["sessions_started"]
    assert seen is not None


def test_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, store_messages=False) as srv:
        s = run(
            tmp_path,
            srv.port,
            'tls = "starttls"\n[workload]\nsessions = 1\nduration = "0.5s"\n',
        )
    assert s["counts"]["messages_accepted"] == 0
    assert s["errors"].get("tls", 0) > 0
