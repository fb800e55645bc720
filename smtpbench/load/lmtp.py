"""LMTP at load (RFC 2033): the per-recipient replies after a message's data, and their accounting.

An LMTP server answers the final dot (or ``BDAT ... LAST``, RFC 3030 4) once per
recipient whose RCPT it accepted, in RCPT order (4.2);
:class:`~smtpbench.protocol.lmtp.LMTPClientProtocol` pairs each of those replies with
``DATA_END`` (``BDAT_LAST``).  :func:`data_end_replies` awaits them all:

* the ``data_end`` phase runs to the *last* of them (one sample per message, as in
  SMTP: from the data written, or with pipelined BDAT from the previous reply),
  and every reply is bounded by the ``data_end`` timeout;
* each reply is counted in ``replies`` (``DATA_END`` or ``BDAT_LAST``), and in
  ``recipients_delivered`` (2xx) or ``recipients_failed`` (4xx/5xx);
  ``messages_partial`` counts messages delivered to some recipients but not all.

The message's own outcome is then decided by the caller as in SMTP, from the
returned reply: the first 2xx when anyone got the message (accepted), else the
first refusal (rejected, its error kind from that code).
"""

from __future__ import annotations

from smtpbench.load.session import Session, perf
from smtpbench.protocol.lmtp import LMTPClientProtocol
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.state import ClientProtocol


def replies_due(protocol: ClientProtocol) -> int:
    """Per-recipient replies the open transaction's end of data will get (read once the 354 is in, before the dot).

    0: one reply that is no recipient's (no recipient accepted, or a BDAT chunk refused).
    """
    assert isinstance(protocol, LMTPClientProtocol), "an LMTP run's sessions speak LMTP"
    return protocol.recipient_replies_due()


async def bdat_last(s: Session, line: bytes) -> Reply:
    """Send ``BDAT ... LAST`` (lockstep) and await its per-recipient replies (:func:`data_end_replies`)."""
    conn = s.conn
    assert conn is not None
    s.arm(s.settings.timeouts["data_end"])
    s.phase = "data_end"
    s.mark = perf()
    await conn.send("BDAT_LAST", line)
    return await data_end_replies(s, replies_due(conn.protocol))


async def data_end_replies(s: Session, due: int) -> Reply:
    """Await the ``due`` per-recipient replies to the end of data (read before it went out); see the module notes.

    ``due`` 0: await the one reply that is no recipient's (counted in ``replies`` only).
    """
    counters = s.recorder.counters
    delivered: Reply | None = None
    refused: Reply | None = None
    failed = 0
    for left in range(max(due, 1) - 1, -1, -1):
        # Every reply is counted; only the last records data_end (since the data was written).
        _, reply = await s.reply("data_end", "data_end", sample=not left)
        if reply.code < 400:
            delivered = delivered or reply
        else:
            refused = refused or reply
            failed += 1
    result = delivered or refused
    assert result is not None  # at least one reply was awaited
    if due:  # per-recipient replies (else the one reply refuses the message as a whole: the caller counts it)
        counts = counters.counts
        counts["recipients_delivered"] += due - failed
        counts["recipients_failed"] += failed
        if delivered is not None and refused is not None:
            counts["messages_partial"] += 1
    return result
