"""The README's relay settings for Exim (manualroute) and OpenSMTPD (relay host), run for real: each server
relays to the run's delivery sink and every accepted message arrives once.  The harness's configurations are
extended with exactly the lines the README gives (README, "Delivery latency")."""

from __future__ import annotations

import pytest

from tests.peers import free_port
from tests.real import mta_exim, mta_opensmtpd
from tests.real.conftest import Factory
from tests.real.test_delivery_postfix import run_through

pytestmark = pytest.mark.timeout(180)

# README: Exim -- the router and transport (braces doubled: the harness's template is a str.format string).
EXIM_ROUTER = """\
to_delivery_sink:
  driver = manualroute
  domains = ! +local_domains
  transport = to_delivery_sink
  route_list = * 127.0.0.1
  self = send

"""
EXIM_TRANSPORT = """\
to_delivery_sink:
  driver = smtp
  port = {sink_port}

"""
# README: OpenSMTPD.
OPENSMTPD_RELAY = """\
action "sink" relay host smtp://127.0.0.1:{sink_port}
match from local for any action "sink"
"""


def exim_relaying(monkeypatch: pytest.MonkeyPatch, sink_port: int) -> None:
    conf = mta_exim.EXIM_CONF
    for old, new in (
        ("hostlist   relay_from_hosts =\n", "hostlist   relay_from_hosts = 127.0.0.1\n"),
        ("begin routers\n\n", "begin routers\n\n" + EXIM_ROUTER),
        ("begin transports\n\n", "begin transports\n\n" + EXIM_TRANSPORT.format(sink_port=sink_port)),
    ):
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    monkeypatch.setattr(mta_exim, "EXIM_CONF", conf)


def opensmtpd_relaying(monkeypatch: pytest.MonkeyPatch, sink_port: int) -> None:
    relay = OPENSMTPD_RELAY.format(sink_port=sink_port).replace("{", "{{").replace("}", "}}")
    monkeypatch.setattr(mta_opensmtpd, "OPENSMTPD_CONF", mta_opensmtpd.OPENSMTPD_CONF + relay)


@pytest.mark.parametrize("kind", ["exim", "opensmtpd"])
def test_relay_settings_deliver_every_message_once(
    tmp_path: pytest.TempPathFactory, real_factory: Factory, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    sink_port = free_port()
    (exim_relaying if kind == "exim" else opensmtpd_relaying)(monkeypatch, sink_port)
    server = real_factory(kind)
    s = run_through(tmp_path, server, sink_port, 'workload.duration="4s"', "workload.rate=20")  # type: ignore[arg-type]
    d = s["delivery"]
    accepted = s["counts"]["messages_accepted"]
    # Exim's default smtp_accept_max (20 connections) may refuse some sessions with 421: not the point here.
    assert accepted >= 30 and set(s["errors"]) <= {"server_shutdown"}, s["errors"]
    assert d["delivered"] == d["accepted"] == accepted
    assert d["lost"] == d["duplicated"] == d["unexpected"] == 0
    assert s["phases"]["delivery"]["count"] == accepted
