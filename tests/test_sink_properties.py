"""Property tests: arbitrary client bytes never desynchronise or hang the sink."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpbench.protocol.commands import encode_data
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.server import SinkServer
from tests.sinkutil import RawClient, SinkThread

# Commands that leave command mode (message content, SASL, TLS, QUIT) would
# change what counts as a line; everything else must get exactly one reply.
MODE_CHANGING = {b"DATA", b"BDAT", b"AUTH", b"QUIT", b"STARTTLS"}
VERBS = [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP", b"ETRN", b"TURN", b"X"]

line_bytes = st.binary(max_size=600).map(lambda b: b.replace(b"\r\n", b"\r "))
command_lines = st.one_of(
    line_bytes,
    st.tuples(st.sampled_from(VERBS), line_bytes).map(lambda t: t[0] + b" " + t[1]),
    st.sampled_from([b"MAIL FROM:<a@x.example>", b"RCPT TO:<u@example.test>", b"EHLO x.example", b""]),
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = SinkConfig(max_bad_commands=100_000, store_messages=True, idle_timeout=10)


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkServer]:
    with SinkThread(CONFIG) as server:
        yield server


def _safe(line: bytes) -> bool:
    verb = line.split(b" ", 1)[0].upper()
    return verb not in MODE_CHANGING


@SETTINGS
@given(st.lists(command_lines.filter(_safe), min_size=1, max_size=25))
def test_one_well_formed_reply_per_line(sink: SinkServer, lines: list[bytes]) -> None:
    with RawClient(sink.port) as c:
        c.send(b"".join(line + b"\r\n" for line in lines))
        replies = c.replies(len(lines), timeout=3.0)
        assert len(replies) == len(lines)
        for reply in replies:
            assert not reply.defects
            assert 200 <= reply.code < 600
        # Still in sync: the very next reply answers this marker (an extra reply would come first).
        marker = c.cmd("VRFY sync-marker@example.test")
        assert marker.code == 252


_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


@SETTINGS
@given(st.binary(max_size=3000))
def test_data_round_trip(sink: SinkServer, body: bytes) -> None:
    expected = _LINE_ENDS.sub(b"\r\n", body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    with RawClient(sink.port) as c:
        c.ehlo()
        assert c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3) == [250, 250, 354]
        assert c.codes(encode_data(body), 1) == [250]
        stored = sink.messages[-1].content
    trace_end = stored.index(b"GMT\r\n") + 5
    assert stored[trace_end:] == expected
