"""Real MTAs for the tests/real tier: Postfix, Exim and OpenSMTPD from Debian's packages on loopback.

Each server runs from a private, minimal configuration in its own short temporary directory (Unix socket paths
must stay under 108 bytes): local domain ``example.test``, relaying refused, listening on 127.0.0.1 on a free
port, delivery of every ``<local>@example.test`` into a maildir below ``RealServer.maildir``.  Postfix comes
from the system package (installed as "No configuration"); Exim and OpenSMTPD conflict with it as installed
MTAs, so ``tests/real/install.sh`` unpacks their packages into ``REAL_ROOT``.  One module per server
(mta_postfix, mta_exim, mta_opensmtpd) on the shared plumbing in harness.py; this module is the entry point.

Every wait here is bounded, and :meth:`RealServer.stop` leaves no process behind (graceful stop, then SIGKILL of
the whole process tree it recorded).  Starting raises :class:`Unavailable` (with the reason) when a server cannot
be provided on this machine; the fixtures in ``conftest.py`` turn that into a skip, or a failure under CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn

from tests.peers import free_port
from tests.real.harness import (
    HOSTNAME,
    LOCAL_DOMAIN,
    REAL_ROOT,
    RealServer,
    TlsFiles,
    Unavailable,
    alive,
    descendants,
    port_open,
    wait_until,
)
from tests.real.mta_dovecot import start_dovecot_lmtp
from tests.real.mta_exim import start_exim
from tests.real.mta_opensmtpd import start_opensmtpd
from tests.real.mta_postfix import postfix_version, start_postfix

__all__ = [
    "HOSTNAME",
    "LOCAL_DOMAIN",
    "REAL_ROOT",
    "STARTERS",
    "RealServer",
    "TlsFiles",
    "Unavailable",
    "alive",
    "descendants",
    "free_port",
    "port_open",
    "postfix_version",
    "provide",
    "skip_or_fail",
    "start_dovecot_lmtp",
    "start_exim",
    "start_opensmtpd",
    "start_postfix",
    "wait_until",
]

#: kind -> start function; the fixtures and ``provide`` go through this table.
STARTERS: dict[str, Callable[..., RealServer]] = {
    "postfix": start_postfix,
    "exim": start_exim,
    "opensmtpd": start_opensmtpd,
    # LMTP, not SMTP: not one of the conftest's real_mta kinds.
    "dovecot-lmtp": start_dovecot_lmtp,
}


def provide(kind: str, **options: Any) -> RealServer:
    """Start server ``kind`` for a test, or skip the test with the reason (fail instead when ``CI`` is set).

    The caller owns the server: ``stop()`` then ``remove()`` it (the conftest fixtures do).  Usable from
    module-scoped fixtures too, e.g. ``server = provide("exim"); yield server; server.stop(); server.remove()``.
    """
    try:
        return STARTERS[kind](**options)
    except Unavailable as exc:
        skip_or_fail(f"{kind} unavailable: {exc}")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the current test with ``reason``; under CI (``CI`` set) fail it instead: CI must run this tier."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this tier must run; see tests/real/install.sh)", pytrace=False)
    pytest.skip(reason)
