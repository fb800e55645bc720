"""The server role of LMTP (RFC 2033), sans I/O: :class:`LMTPMixin` and :class:`LMTPServerConnection`.

What differs from SMTP on the server side: the session opens with ``LHLO``
(``EHLO`` and ``HELO`` are answered 500: the handlers of
:mod:`smtpbench.protocol.server` test :attr:`~smtpbench.protocol.server_state.ServerState.lmtp`),
and a complete message gets *one reply per accepted recipient*, in RCPT order
(4.2), after the final dot and after ``BDAT ... LAST`` alike (RFC 3030 4).
Each recipient's delivery may be refused on its own: the size limit refuses
every one, and the embedding server's :meth:`~smtpbench.protocol.server_state.ServerState.delivery_refusal`
hook is asked once per recipient.  The message is accepted (``message_accepted``,
with ``rcpts`` narrowed to the recipients it was delivered to) when at least one
recipient got it.

The SMTP server pays nothing for this: LMTP sessions are instances of a subclass.
"""

from __future__ import annotations

from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_data import DataMixin
from smtpbench.protocol.server_state import R_NO_RCPT, R_SIZE_EXCEEDED, shown


class LMTPMixin(DataMixin):
    """Per-recipient replies at the end of the data; put it before the SMTP connection class in the bases."""

    lmtp = True

    def finish_message(self, size: int, overflow: bool, content: bytes | None, via: str) -> None:
        """Give one reply per accepted recipient to a complete message (``via`` DATA or BDAT); end the transaction.

        Counts ``recipients_delivered`` / ``recipients_failed`` per recipient, and the message as accepted when
        anyone got it, else as rejected (temporarily when the first recipient's refusal was a 4xx).
        """
        stats = self.stats
        out = self.out
        if self.paced:
            self.on_phase("data_end")
        if self.chancy and self.drop_now():
            self.reset_transaction()
            return
        if not self.rcpts:
            # Only reachable with the S-03 / K-02 quirks: nobody to deliver to, so one reply.
            stats.messages_rejected_perm += 1
            out.append(R_NO_RCPT)
            self.reset_transaction()
            return
        refusals: list[bytes | None] = []
        delivered: list[str] = []
        for rcpt in self.rcpts:
            refusal = R_SIZE_EXCEEDED if overflow else self.delivery_refusal() if self.chancy else None
            refusals.append(refusal)
            if refusal is None:
                delivered.append(rcpt)
        stats.recipients_delivered += len(delivered)
        stats.recipients_failed += len(refusals) - len(delivered)
        mid = ""
        if delivered:
            stats.messages_accepted += 1
            stats.bytes_received += size
            rcpts = self.rcpts
            self.rcpts = delivered  # what message_accepted stores and reports: the recipients who got it
            mid = self.message_accepted(content, via)
            self.rcpts = rcpts
        elif refusals[0] is not None and refusals[0][:1] == b"4":
            stats.messages_rejected_temp += 1
        else:
            stats.messages_rejected_perm += 1
        for rcpt, refusal in zip(self.rcpts, refusals, strict=True):
            out.append(refusal or f"250 2.0.0 <{shown(rcpt, 200)}> delivered as {mid}\r\n".encode())
        self.reset_transaction()


class LMTPServerConnection(LMTPMixin, ServerConnection):
    """One LMTP server session's protocol: :class:`~smtpbench.protocol.server.ServerConnection` speaking LMTP."""
