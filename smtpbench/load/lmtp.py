"""LMTP at load (RFC 2033): the per-recipient replies after a message's data, and their accounting.

An LMTP server answers the final dot once per recipient whose RCPT it accepted, in
RCPT order (4.2); :class:`~smtpbench.protocol.lmtp.LMTPClientProtocol` pairs each
of those replies with ``DATA_END``.  :func:`data_end_replies` awaits them all:

* the ``data_end`` phase runs from the data written to the *last* of them (one
  sample per message, as in SMTP), and every reply is bounded by the
  ``data_end`` timeout;
* each reply is counted in ``replies`` (``DATA_END``), and in
  ``recipients_delivered`` (2xx) or ``recipients_failed`` (4xx/5xx);
  ``messages_partial`` counts messages delivered to some recipients but not all.

The message's own outcome is then decided by the caller as in SMTP, from the
returned reply: the first 2xx when anyone got the message (accepted), else the
first refusal (rejected, its error kind from that code).
"""

from __future__ import annotations

from smtpbench.load.session import Session
from smtpbench.net.errors import ReplyError
from smtpbench.protocol.lmtp import LMTPClientProtocol
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.state import ClientProtocol
from smtpbench.protocol.tables import is_expected


def replies_due(protocol: ClientProtocol) -> int:
    """How many replies the open transaction's final dot will get (read it once the 354 is in, before the dot)."""
    assert isinstance(protocol, LMTPClientProtocol), "an LMTP run's sessions speak LMTP"
    return protocol.final_replies_due()


async def data_end_replies(s: Session, due: int) -> Reply:
    """Await the ``due`` replies to the final dot (``due`` read before the data went out); see the module notes."""
    conn = s.conn
    assert conn is not None
    counters = s.recorder.counters
    delivered: Reply | None = None
    refused: Reply | None = None
    failed = 0
    for left in range(due - 1, -1, -1):
        if left:  # not the last: counted like Session.reply does, but no phase sample yet
            s.arm(s.settings.timeouts["data_end"])
            verb, reply = await conn.next_reply(None, "data_end")
            code = reply.code
            counters.replies[verb][code] += 1
            if not is_expected(verb, code):
                counters.unexpected[verb][code] += 1
            if code == 421:
                raise ReplyError(f"server closing: {code} {reply.text[:80]}", "data_end", 421)
        else:  # the last: records data_end since the data was written
            _, reply = await s.reply("data_end", "data_end")
        if reply.code < 400:
            delivered = delivered or reply
        else:
            refused = refused or reply
            failed += 1
    counts = counters.counts
    counts["recipients_delivered"] += due - failed
    counts["recipients_failed"] += failed
    if delivered is not None and refused is not None:
        counts["messages_partial"] += 1
    result = delivered or refused
    assert result is not None  # due >= 1
    return result
