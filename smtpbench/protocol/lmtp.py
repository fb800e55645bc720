"""The client role of LMTP (RFC 2033), sans I/O: :class:`LMTPClientProtocol`.

LMTP is SMTP with two changes that matter to a client:

* ``LHLO`` replaces ``EHLO``/``HELO`` (4.1); there is no ``HELO`` fallback.
* After the end of the message data (the final dot, or ``BDAT ... LAST``, which
  RFC 3030 4 lets LMTP use), the server sends *one reply per recipient whose
  RCPT it accepted*, in RCPT order (4.2): each says whether that recipient got
  the message.  With no accepted recipient the server answers once (503).

The state machine of :class:`~smtpbench.protocol.state.ClientProtocol` is kept
as is: this subclass only counts the accepted RCPTs of the open transaction and,
when the first reply to the end of data arrives, queues the verb again for each
further reply due, so every per-recipient reply is returned paired with
``DATA_END`` (or ``BDAT_LAST``).  The session leaves the data state with the last
of them.  The SMTP client pays nothing for this: it is a different class.
"""

from __future__ import annotations

from smtpbench.protocol.errors import LocalProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.protocol.state import ClientProtocol, parse_ehlo

#: The verbs whose reply is one per accepted recipient in LMTP.
FINAL_VERBS = frozenset({"DATA_END", "BDAT_LAST"})


class LMTPClientProtocol(ClientProtocol):
    """One LMTP client session's protocol state.

    Guarantees, beyond :class:`ClientProtocol`'s: ``EHLO`` and ``HELO`` are
    refused (:class:`LocalProtocolError`), ``LHLO``'s reply sets
    ``extensions``; the end of data gets :meth:`final_replies_due` replies,
    each returned as ``(verb, reply)`` in recipient order, and the state moves
    on only with the last one (to READY after DATA; after ``BDAT LAST``, to
    READY when any recipient was accepted, else the transaction stays open).
    """

    __slots__ = ("rcpt_ok", "chunk_failed", "_left", "_any_ok")

    def __init__(self, parser: ReplyParser | None = None) -> None:
        super().__init__(parser)
        #: RCPTs of the open transaction the server accepted (reset by each MAIL).
        self.rcpt_ok = 0
        #: A BDAT chunk of the open transaction was refused: ``BDAT LAST`` then gets one reply.
        self.chunk_failed = False
        self._left = 0  # further replies due to the end of data being answered (0: none pending)
        self._any_ok = False

    def send(self, verb: str, line: bytes) -> bytes:
        """As :meth:`ClientProtocol.send`; ``EHLO`` and ``HELO`` do not exist in LMTP."""
        if verb == "EHLO" or verb == "HELO":
            raise LocalProtocolError(f"{verb} is not an LMTP command: LHLO (RFC 2033 4.1)")
        return super().send(verb, line)

    def recipient_replies_due(self) -> int:
        """How many per-recipient replies the end of data of the open transaction gets: one per accepted RCPT.

        0 when it gets a single reply that is no recipient's (no RCPT accepted, or a BDAT chunk
        refused).  Valid from the last RCPT reply until the next MAIL reply (the caller reads it
        before the replies to the end of data are all in).
        """
        return 0 if self.chunk_failed else self.rcpt_ok

    def final_replies_due(self) -> int:
        """How many replies the end of data of the open transaction gets (at least one): see :meth:`recipient_replies_due`."""
        return self.recipient_replies_due() or 1

    def _on_reply(self, verb: str, reply: Reply) -> None:
        code = reply.code
        if verb in FINAL_VERBS and code != 421:
            if not self._left:  # the first reply to this end of data
                self._left = self.final_replies_due()
                self._any_ok = False
            self._left -= 1
            self._any_ok = self._any_ok or code < 400
            if self._left:
                self.pending.appendleft(verb)  # the next reply answers the same end of data
                return
            # The last one: the transaction's outcome is "delivered to anyone".
            super()._on_reply(verb, _OK if self._any_ok else reply)
            return
        super()._on_reply(verb, reply)
        if code >= 400:
            if verb == "BDAT":
                self.chunk_failed = True
        elif verb == "RCPT":
            self.rcpt_ok += 1
        elif verb == "MAIL":
            self.rcpt_ok = 0
            self.chunk_failed = False
        elif verb == "LHLO":
            self.extensions = parse_ehlo(reply)


#: Stands for "some recipient accepted the message" in the state transition of the last final reply.
_OK = Reply(250, ("2.0.0 delivered to at least one recipient",), b"")
