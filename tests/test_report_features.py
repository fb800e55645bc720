"""``smtpbench report``: the LMTP, TLS and PROXY figures of a run that has them, and nothing of them otherwise.

Both runs are real, over loopback: one speaks LMTP over STARTTLS behind PROXY v2
headers to our sink (which speaks all three), the other plain SMTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smtpbench.errors import EXIT_OK
from tests.sinkutil import SinkThread, tls_pair
from tests.test_bad_input import invoke
from tests.test_engine import run

#: Section headings and row names that only a run with the feature shows.
FEATURE_MARKS = (
    "LMTP (",
    "TLS handshakes",
    "PROXY protocol",
    "recipients_delivered",
    "resume_declined",
    "sessions_announced",
)


def report(*folders: str, out: Path) -> str:
    code, _out, err = invoke(["report", *folders, "-o", str(out)])
    assert code == EXIT_OK, err
    return out.read_text()


def row(name: str, *cells: Any) -> str:
    """How ``_per_run_table`` writes a row: the name, then one cell per run."""
    return f"<tr><td>{name}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def test_report_shows_lmtp_tls_and_proxy_figures_only_for_runs_that_have_them(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # Some recipients refused after the data: failed and partly delivered messages are not all zero.
    with SinkThread(
        lmtp=True, ssl_context=pair.server_context, proxy_protocol=True, reject_data_perm=0.2, seed=3
    ) as srv:
        rich = run(
            tmp_path / "a",
            srv.port,
            f'protocol = "lmtp"\ntls = "starttls"\nca_file = "{pair.ca_file}"\n'
            'proxy_protocol = "v2"\nproxy_sources = "198.51.100.0/29"\n[target.tls_options]\nresume = 0.5\n'
            "[workload]\nsessions = 2\nmessages = 24\nmessages_per_session = 3\nseed = 5\n"
            "[message]\nrecipients = 3\n[output]\nreport = false\n",
        )
    with SinkThread(store_messages=False) as srv:
        plain = run(tmp_path / "b", srv.port, "[workload]\nsessions = 1\nmessages = 5\n[output]\nreport = false\n")
    c, tls, proxy = rich["counts"], rich["tls"], rich["proxy"]
    assert c["recipients_failed"] > 0 and c["messages_partial"] > 0 and tls["handshakes"] == c["sessions_started"]
    assert proxy["sessions_announced"] == c["sessions_started"] and proxy["distinct_clients"] > 1

    html = report(rich["_dir"], out=tmp_path / "rich.html")
    assert "<h3>LMTP (per-recipient replies to the data)</h3>" in html
    for key in ("recipients_delivered", "recipients_failed", "messages_partial"):
        assert row(key, f"{c[key]:,}") in html
    assert "<h3>TLS handshakes</h3>" in html
    for key in ("handshakes", "full", "resumed", "resume_declined"):
        assert row(key, f"{tls[key]:,}") in html
    assert row("versions", ", ".join(f"{v}: {n:,}" for v, n in tls["versions"].items())) in html
    assert "<h3>PROXY protocol (announced clients)</h3>" in html
    assert row("version", "v2") in html
    assert row("sessions_announced", f"{proxy['sessions_announced']:,}") in html
    assert row("distinct_clients", proxy["distinct_clients"]) in html

    html = report(plain["_dir"], out=tmp_path / "plain.html")
    assert "<h3>counts</h3>" in html and not [m for m in FEATURE_MARKS if m in html]

    # Side by side: the plain run's column says "–" (not 0: it has no such figures).
    html = report(rich["_dir"], plain["_dir"], out=tmp_path / "both.html")
    assert row("sessions_announced", f"{proxy['sessions_announced']:,}", "–") in html
    assert row("recipients_failed", f"{c['recipients_failed']:,}", "–") in html
    assert row("handshakes", f"{tls['handshakes']:,}", "–") in html
