"""``smtpbench run`` with ``target.protocol = "lmtp"`` against Dovecot's LMTP server (tests/real harness).

Dovecot (Debian's ``dovecot-lmtpd``, a private instance on loopback) delivers every recipient into its own
maildir and answers the final dot once per recipient (RFC 2033 4.2).  A run of N messages to M recipients
must report exactly N*M recipients delivered: the number of mails found in Dovecot's maildirs, M folders of
N mails each.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_OK
from tests.hostile import cli_argv, only_run_dir
from tests.real.servers import LOCAL_DOMAIN, RealServer

pytestmark = pytest.mark.timeout(180)

MESSAGES = 40
RECIPIENTS = 3


@pytest.mark.parametrize(("pipelining", "chunking"), [("auto", "off"), ("off", "off"), ("auto", "on"), ("off", "on")])
def test_every_recipient_is_delivered_and_counted(
    dovecot_lmtp: RealServer, tmp_path: Path, pipelining: str, chunking: str
) -> None:
    """DATA or BDAT (Dovecot's LMTP advertises CHUNKING), pipelined or command by command."""
    profile = tmp_path / "lmtp.toml"
    profile.write_text(
        f'[target]\nhost = "{dovecot_lmtp.host}"\nport = {dovecot_lmtp.port}\nprotocol = "lmtp"\n'
        f'[smtp]\npipelining = "{pipelining}"\nchunking = "{chunking}"\nchunk_size = "1KiB"\n[smtp.timeouts]\ndata_end = "60s"\n'
        f"[workload]\nsessions = 3\nmessages = {MESSAGES}\nmessages_per_session = 5\n"
        f'[message]\nsize = "2KiB"\nrecipients = {RECIPIENTS}\nto = "user{{rcpt}}@{LOCAL_DOMAIN}"\n'
        f'[output]\nresults_dir = "{tmp_path / "results"}"\nreport = false\n'
    )
    proc = subprocess.run(
        [*cli_argv(), "run", str(profile), "--progress", "none"], capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    summary = json.loads((Path(only_run_dir(str(tmp_path))) / "summary.json").read_text())
    c = summary["counts"]
    assert summary["status"] == "completed" and c["errors"] == 0, (summary["errors"], proc.stderr)
    assert c["messages_accepted"] == MESSAGES and c["recipients_delivered"] == MESSAGES * RECIPIENTS
    assert c.get("recipients_failed", 0) == 0 and c.get("recipients_rejected", 0) == 0
    # Dovecot's own answer: one 250 per recipient after each message, i.e. N*M replies to the end of data.
    final = "BDAT_LAST" if chunking == "on" else "DATA_END"
    assert summary["replies"][final] == {"250": MESSAGES * RECIPIENTS}
    assert summary["replies"]["LHLO"] == {"250": c["sessions_started"]}
    assert summary["unexpected_replies"] == {}
    # And in the maildirs: M folders of N mails, N*M in all (Dovecot stores as it replies).
    assert len(dovecot_lmtp.wait_delivered(MESSAGES * RECIPIENTS)) == MESSAGES * RECIPIENTS
    for i in range(RECIPIENTS):
        assert len(dovecot_lmtp.delivered(f"user{i}")) == MESSAGES
    assert len(dovecot_lmtp.delivered()) == c["recipients_delivered"]
