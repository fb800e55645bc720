"""TLS session resumption across the sessions of a run (``[target.tls_options] resume``).

Every session over TLS keeps its TLS session (its ticket, or its id for a
TLS 1.2 server-side cache) in the run's :class:`SavedSessions` once it has
read the reply to its EHLO over TLS: with TLS 1.3 the server sends its
tickets only after the handshake, so they are read with the first
application data, not before.  A session drawn to resume (the ``resume``
share, drawn with the session's seeded rng) takes the freshest saved one
and offers it in its handshake (``SSLObject.session``, set through
``trio.SSLStream`` before the handshake).  Each saved session is offered
once (RFC 8446 C.4: a client should not reuse a ticket); a session drawn
when none is saved yet (the first sessions of a run) does a full handshake,
counted as drawn but not offered.  Whatever the server decides is counted as
it happened (:mod:`smtpbench.metrics.tlsstats`): a declined offer is a full
handshake.  The session steps that use the store: :mod:`smtpbench.load.tls_steps`.
"""

from __future__ import annotations

import random
import ssl
from collections import Counter, deque

import trio

from smtpbench.metrics.tlsstats import count_draw

#: Saved sessions kept at most (the freshest; older ones are dropped).  A few KiB each.
KEEP = 1024


class SavedSessions:
    """The run's saved TLS sessions, shared by its sessions (one event loop: no locking)."""

    __slots__ = ("share", "_saved")

    def __init__(self, share: float, keep: int = KEEP) -> None:
        self.share = share
        self._saved: deque[ssl.SSLSession] = deque(maxlen=keep)

    def draw(self, rng: random.Random, counts: Counter[str]) -> ssl.SSLSession | None:
        """The session to offer in this handshake, or None for a full one (counted: see the module notes).

        Draws from ``rng`` only when the share is between 0 and 1, so that a
        run's other draws stay those of the same seed without resumption.
        """
        if self.share <= 0 or (self.share < 1 and rng.random() >= self.share):
            return None
        session = self._saved.pop() if self._saved else None
        count_draw(counts, session is not None)
        return session

    def keep(self, stream: trio.SSLStream[trio.abc.Stream]) -> None:
        """Save the TLS session of ``stream`` if a later handshake could resume it."""
        session = stream.session
        if session is not None and (session.has_ticket or (stream.version() != "TLSv1.3" and session.id)):
            self._saved.append(session)
