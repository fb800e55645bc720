"""Session steps around the TLS handshake: count what it negotiated, keep its TLS session for resumption.

The store and how resumption works: :mod:`smtpbench.load.tls_sessions`.
"""

from __future__ import annotations

from typing import cast

import trio

from smtpbench.load.session import Session
from smtpbench.metrics.tlsstats import count_handshake


def handshake_done(s: Session, offered: bool) -> str:
    """Count the handshake the session's stream just completed; the phase to time it under."""
    assert s.conn is not None
    tls = cast("trio.SSLStream[trio.abc.Stream]", s.conn.stream)
    cipher = tls.cipher()
    return count_handshake(
        s.recorder.counters.counts, tls.version(), cipher[0] if cipher else None, bool(tls.session_reused), offered
    )


async def step_keep_tls_session(s: Session) -> None:
    """After the EHLO over TLS (its tickets read): save the session for later ones to resume."""
    assert s.conn is not None and s.settings.tls_sessions is not None
    s.settings.tls_sessions.keep(cast("trio.SSLStream[trio.abc.Stream]", s.conn.stream))
