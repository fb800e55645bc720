"""A load run against every fault the sink can inject, with DATA, BDAT and LMTP: classified, accounted, bounded.

Each fault is one way a real server gets SMTP wrong.  A load run against it must end by itself, count every
session and message once, name each failure by kind (never the catch-all ``error``), and not wait out a timeout
because the client lost step with the server.  The sweep that first ran this found three client bugs (the lone
dot after a 354 for no recipient, replies out of order, and a closed loop retrying a refused greeting at once).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from smtpbench.sink.faults import FAULTS
from tests.accounting import assert_accounted
from tests.sinkutil import SinkThread
from tests.test_engine import run

TIMEOUT_S = 2.0
PROFILE = (
    '[smtp]\npipelining = "on"\n[smtp.timeouts]\n'
    + "".join(
        f'{k} = "{TIMEOUT_S}s"\n'
        for k in ("connect", "banner", "ehlo", "mail", "rcpt", "data", "data_block", "data_end", "quit", "other")
    )
    + '[workload]\nsessions = 2\nmessages = 12\nmessages_per_session = 3\nduration = "3s"\ngrace = "1s"\nseed = 3\n'
    + "[message]\nrecipients = {min = 1, max = 3}\n"
)
#: How the message goes: DATA, BDAT chunks (RFC 3030), or LMTP (RFC 2033: one reply per recipient).
MODES = {
    "data": "",
    "bdat": '[smtp]\nchunking = "on"\nchunk_size = "4KiB"\n',
    "lmtp": 'protocol = "lmtp"\n',  # continues [target]
}
#: The server's own fault, reported as such: P-03 throws away what is pipelined after the final dot, so the
#: next envelope (sent with the data, pipeline_data = true) is never answered.  BDAT sends no final dot.
TIMES_OUT = {("data", "P-03"), ("lmtp", "P-03")}
#: Nothing can be accepted: C-02 and T-05 refuse every session or message, and P-01 answers every pipelined
#: group out of order (with DATA, a 354 paired with RCPT: a protocol error at the first message).
NOTHING_ACCEPTED = {(mode, fault) for mode in MODES for fault in ("C-02", "T-05")} | {
    ("data", "P-01"),
    ("lmtp", "P-01"),
}
#: duration + grace + one timeout = 6 s, at least 3x headroom for a loaded machine.
WALL_BOUND_S = 20.0


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_load_run_against_a_faulty_server_is_classified_and_bounded(tmp_path: Path, fault: str, mode: str) -> None:
    t0 = time.monotonic()
    with SinkThread(store_messages=False, faults={fault}, reject_rcpt_perm=0.3, seed=4, lmtp=mode == "lmtp") as srv:
        profile = PROFILE.replace("[smtp]\n", MODES[mode], 1) if mode == "bdat" else MODES[mode] + PROFILE
        s = run(tmp_path, srv.port, profile)
    elapsed = time.monotonic() - t0
    assert elapsed < WALL_BOUND_S, elapsed
    assert_accounted(s)
    errors = s["errors"]
    assert "error" not in errors, errors
    assert ("timeout" in errors) == ((mode, fault) in TIMES_OUT), errors
    if (mode, fault) not in NOTHING_ACCEPTED:
        assert s["counts"]["messages_accepted"] > 0, s["counts"]
