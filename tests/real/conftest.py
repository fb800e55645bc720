"""Fixtures of the real-MTA tier: Postfix, Exim and OpenSMTPD on loopback (see servers.py).

A server that cannot be provided here (not root, packages not installed) skips its tests with the reason, except
under CI (the ``CI`` environment variable set), where that is a failure: CI must really run this tier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.servers import RealServer, provide

#: The server kinds of servers.STARTERS.
KINDS = ("postfix", "exim", "opensmtpd")

Factory = Callable[..., RealServer]


@pytest.fixture
def real_factory(tmp_path: Path) -> Iterator[Factory]:
    """``start(kind, **options) -> RealServer``: start a server for this test; all are stopped at teardown.

    ``kind`` is one of KINDS; options are those of servers.start_<kind> (e.g. ``main_cf={...}``, ``tls=True``).
    At teardown each server's log is copied into the test's tmp_path (kept by pytest) before its directory goes.
    """
    started: list[RealServer] = []

    def start(kind: str, **options: Any) -> RealServer:
        server = provide(kind, **options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        try:
            server.stop()
        finally:
            (tmp_path / f"{server.name}.log").write_text(server.log_text())
            server.remove()


@pytest.fixture
def postfix(real_factory: Factory) -> RealServer:
    """Postfix with the harness's defaults (no client in mynetworks, smtpd_forbid_bare_newline at its default)."""
    return real_factory("postfix")


@pytest.fixture
def exim(real_factory: Factory) -> RealServer:
    """Exim 4 with its default anti-abuse limits."""
    return real_factory("exim")


@pytest.fixture
def opensmtpd(real_factory: Factory) -> RealServer:
    """OpenSMTPD (one at a time on a machine; see servers.OPENSMTPD_LOCK)."""
    return real_factory("opensmtpd")


@pytest.fixture
def dovecot_lmtp(real_factory: Factory) -> RealServer:
    """Dovecot's LMTP server: accepts every recipient (final delivery), a maildir per local part."""
    return real_factory("dovecot-lmtp")


@pytest.fixture(params=KINDS)
def real_mta(request: pytest.FixtureRequest, real_factory: Factory) -> RealServer:
    """Each of the three servers in turn, with default options."""
    return real_factory(request.param)
