"""Load knobs of the sink: injected latency, seeded reject ratios, disconnects, stats, store."""

from __future__ import annotations

import json
import smtplib
import time
from pathlib import Path

import pytest

from smtpbench.errors import ConfigError
from smtpbench.sink.config import SinkConfig
from smtpbench.units import parse_duration, parse_ratio
from tests.sinkutil import RawClient, SinkThread

GROUP = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"


def timed_rcpt(port: int) -> float:
    with RawClient(port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@x.example>")
        start = time.perf_counter()
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        return time.perf_counter() - start


def test_rcpt_delay_is_applied() -> None:
    with SinkThread() as fast:
        baseline = min(timed_rcpt(fast.port) for _ in range(3))
    with SinkThread(delays={"rcpt": 0.02}) as slow:
        delayed = min(timed_rcpt(slow.port) for _ in range(3))
    assert delayed >= 0.02
    assert delayed - baseline >= 0.015


def test_banner_delay_is_applied() -> None:
    with SinkThread(delays={"banner": 0.05}) as server:
        start = time.perf_counter()
        RawClient(server.port).close()
        assert time.perf_counter() - start >= 0.05


def rcpt_codes(port: int, count: int) -> list[int]:
    with RawClient(port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@x.example>")
        rcpts = b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(count))
        return c.codes(rcpts, count)


def test_reject_ratios_roughly_honoured_and_reproducible() -> None:
    knobs = {"reject_rcpt_temp": 0.2, "reject_rcpt_perm": 0.1, "seed": 7, "max_recipients": 1000}
    with SinkThread(**knobs) as server:
        first = rcpt_codes(server.port, 1000)
    with SinkThread(**knobs) as server:
        second = rcpt_codes(server.port, 1000)
        assert server.stats.recipients_rejected == first.count(450) + first.count(550)
    assert first == second  # same seed, same connection order: same choices
    assert 150 <= first.count(450) <= 250
    assert 60 <= first.count(550) <= 140
    assert first.count(250) == 1000 - first.count(450) - first.count(550)


def test_data_reject_ratios() -> None:
    with SinkThread(reject_data_temp=0.5, reject_data_perm=0.5, seed=3) as server, RawClient(server.port) as c:
        c.ehlo()
        codes = []
        for _ in range(40):
            c.codes(GROUP, 3)
            codes += c.codes(b"x\r\n.\r\n", 1)
        assert set(codes) == {451, 554}
        assert server.stats.messages_accepted == 0
        assert server.stats.messages_rejected_temp + server.stats.messages_rejected_perm == 40


def test_disconnect_ratio_drops_connections() -> None:
    with SinkThread(disconnect=1.0, seed=1) as server:
        with RawClient(server.port) as c:
            c.send(b"EHLO x.example\r\n")
            assert c.wait_closed()
            assert c.pending == []
        assert server.stats.disconnects_injected == 1
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as s, pytest.raises(smtplib.SMTPServerDisconnected):
            s.ehlo()


def test_stats_and_store_dir(tmp_path: Path) -> None:
    with SinkThread(store_dir=tmp_path) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as s:
            s.sendmail("a@x.example", ["u@example.test", "v@example.test"], b"Subject: s\r\n\r\nhello\r\n")
            s.sendmail("a@x.example", ["u@example.test"], b"Subject: t\r\n\r\nagain\r\n")
        stats = server.stats.as_dict()
    assert stats["messages_accepted"] == 2 and stats["recipients_accepted"] == 3
    assert stats["connections"] == 1 and stats["sessions_completed"] == 1
    emls = sorted(tmp_path.glob("*.eml"))
    assert len(emls) == 2
    envelope = json.loads(emls[0].with_suffix(".json").read_text())
    assert envelope["rcpt_to"] == ["u@example.test", "v@example.test"]
    assert emls[0].read_bytes().endswith(b"Subject: s\r\n\r\nhello\r\n")


def test_value_parsers() -> None:
    assert parse_duration("20ms", "k") == pytest.approx(0.02)
    assert parse_duration("1.5s", "k") == 1.5
    assert parse_duration("2", "k") == 2.0
    assert parse_ratio("5%", "k") == pytest.approx(0.05)
    assert parse_ratio("0.25", "k") == 0.25
    for bad in ("fast", "-1s", "20 parsecs"):
        with pytest.raises(ConfigError):
            parse_duration(bad, "k")
    for bad in ("1.5", "x", "-0.1"):
        with pytest.raises(ConfigError):
            parse_ratio(bad, "k")
    with pytest.raises(ConfigError):
        SinkConfig(reject_rcpt_temp=0.7, reject_rcpt_perm=0.7).validate()
    with pytest.raises(ConfigError):
        SinkConfig(faults=frozenset({"NOPE"})).validate()
