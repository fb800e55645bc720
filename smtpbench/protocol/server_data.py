"""The server role's message transfer: DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030).

DATA content goes to :class:`~smtpbench.protocol.commands.DataReceiver`
(only ``CRLF.CRLF`` ends it, dot-stuffing is undone on the way); BDAT chunks
are counted off by the connection's input loop.  Either way the message
ends in :meth:`DataMixin.finish_message`, which applies the size limit and
the embedding server's refusal knob before calling ``message_accepted``.
:class:`QuirkyData` is the slow, simple receiver used only with the
data-phase quirks.
"""

from __future__ import annotations

from smtpbench.protocol.commands import DataReceiver
from smtpbench.protocol.server_state import (
    BDAT,
    CMD,
    DATA,
    R_354,
    R_NEED_EHLO,
    R_NEED_MAIL,
    R_NO_ARGS,
    R_NO_RCPT,
    R_NO_RCPT_BDAT,
    R_SIZE_EXCEEDED,
    ServerState,
)

#: Quirks that need :class:`QuirkyData` instead of the fast receiver.
DATA_QUIRKS = frozenset({"D-03", "D-05", "D-06", "D-08", "Z-03"})


class DataMixin(ServerState):
    """DATA and BDAT for :class:`~smtpbench.protocol.server.ServerConnection`."""

    def data(self, arg: str) -> None:
        """Answer ``DATA``: 354 and switch the input to message content, or say why not."""
        quirks = self.quirks
        out = self.out
        if arg.strip():
            out.append(R_NO_ARGS)
            return
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if self.mail_from is None:
            out.append(R_NEED_MAIL)
            return
        if (self.bdat_used and not (quirks and "K-02" in quirks)) or self.binary:
            out.append(b"503 5.5.1 Error: DATA not allowed after BDAT or with BODY=BINARYMIME\r\n")
            return
        if not self.rcpts and not (quirks and "S-03" in quirks):
            out.append(R_NO_RCPT)
            return
        if self.paced:
            self.on_phase("data")
        out.append(R_354)
        self.mode = DATA
        self.bdat_buf = None
        if quirks and quirks & DATA_QUIRKS:
            self.fdata = QuirkyData(self)
        else:
            self.receiver = DataReceiver(keep=self.config.keep_content, max_size=self.max_size_effective())

    def end_of_data(self) -> None:
        """The fast receiver saw ``CRLF.CRLF``: finish the message."""
        receiver = self.receiver
        assert receiver is not None
        self.mode = CMD
        content: bytes | None = None
        if self.config.keep_content:
            content = bytes(receiver.content) if self.quirks and "D-02" in self.quirks else receiver.message()
        self.finish_message(receiver.size, receiver.overflow, content, "DATA")

    def finish_message(self, size: int, overflow: bool, content: bytes | None, via: str) -> None:
        """Give the final reply to a complete message (``via`` DATA or BDAT) and end the transaction."""
        stats = self.stats
        if self.paced:
            self.on_phase("data_end")
        out = self.out
        if self.chancy and self.drop_now():
            self.reset_transaction()
            return
        refusal = None
        if overflow:
            stats.messages_rejected_perm += 1
            out.append(R_SIZE_EXCEEDED)
        elif self.chancy and (refusal := self.data_refusal()) is not None:
            out.append(refusal)
        elif not self.rcpts:
            # Only reachable with the S-03 / K-02 quirks: nobody to deliver to.
            stats.messages_rejected_perm += 1
            out.append(R_NO_RCPT)
        else:
            stats.messages_accepted += 1
            stats.bytes_received += size
            mid = self.message_accepted(content, via)
            out.append(b"250 2.0.0 OK: queued as " + mid.encode() + b"\r\n")
        self.reset_transaction()

    def bdat(self, arg: str) -> None:
        """Answer ``BDAT size [LAST]``: the next ``size`` octets are a chunk, whatever they hold."""
        quirks = self.quirks
        parts = arg.split()
        if (
            not 1 <= len(parts) <= 2
            or not (parts[0].isascii() and parts[0].isdigit())
            or (len(parts) == 2 and parts[1].upper() != "LAST")
        ):
            self.out.append(b"501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n")
            return
        size = int(parts[0])
        last = len(parts) == 2
        error: bytes | None = None
        if self.greeted is None:
            error = R_NEED_EHLO
        elif self.mail_from is None:
            error = R_NEED_MAIL
        elif not self.rcpts:
            error = R_NO_RCPT_BDAT
        elif quirks and "K-01" in quirks and size == 0 and last:
            error = b"501 5.5.4 Error: chunk size must be positive\r\n"
        if error is not None and quirks and "K-03" in quirks:
            self.out.append(error)
            return
        # A refused chunk is still read off the input (RFC 3030 2), then refused.
        self.bdat_error = error
        if error is None:
            self.bdat_used = True
            if self.bdat_buf is None:
                self.bdat_buf = bytearray() if self.config.keep_content else None
        self.bdat_left = size
        self.bdat_last = last
        self.mode = BDAT
        if size == 0:
            self.bdat_done()

    def bdat_chunk(self, buf: bytes, pos: int, take: int) -> None:
        """Take ``buf[pos:pos + take]`` as octets of the current chunk (``take`` at most ``bdat_left``)."""
        if self.bdat_error is None:
            self.bdat_size += take
            if self.bdat_buf is not None and self.bdat_size <= self.max_size_effective():
                self.bdat_buf += buf[pos : pos + take]
        self.bdat_left -= take
        if self.bdat_left == 0:
            self.bdat_done()

    def bdat_done(self) -> None:
        """The current chunk is complete: reply to it, or finish the message after ``LAST``."""
        self.mode = CMD
        if self.bdat_error is not None:
            self.out.append(self.bdat_error)
            self.bdat_error = None
            return
        if not self.bdat_last:
            self.out.append(f"250 2.0.0 {self.bdat_size} octets received\r\n".encode())
            return
        limit = self.max_size_effective()
        overflow = bool(limit) and self.bdat_size > limit
        content = bytes(self.bdat_buf) if self.bdat_buf is not None else None
        self.finish_message(self.bdat_size, overflow, content, "BDAT")


class QuirkyData:
    """DATA reception with the data-phase quirks (D-03, D-05, D-06, D-08, Z-03); slow and simple on purpose."""

    def __init__(self, session: DataMixin) -> None:
        self.s = session
        quirks = session.quirks
        self.buf = bytearray(b"\r\n")  # the DATA line's CRLF: an empty message ends at once
        self.ends = [b"\r\n.\r\n"]
        if "D-05" in quirks:
            self.ends.append(b"\n.\n")
        if "D-06" in quirks:
            self.ends.append(b"\n.\r\n")
        self.line_quirk = "D-03" in quirks
        self.line_reported = False
        self.eight_bit_quirk = "D-08" in quirks and not session.body8
        self.early_size = "Z-03" in quirks
        self.size_reported = False

    def feed(self, chunk: bytes) -> bytes | None:
        """Consume ``chunk``; return the input after the end of data, or None while it has not ended."""
        s = self.s
        start = max(len(self.buf) - 4, 0)
        self.buf += chunk
        buf = self.buf
        if self.eight_bit_quirk:
            for i in range(start, len(buf)):
                if buf[i] >= 0x80:
                    s.out.append(b"554 5.6.0 Error: 8-bit data without BODY=8BITMIME\r\n")
                    s.stats.messages_rejected_perm += 1
                    s.reset_transaction()
                    s.mode = CMD
                    nl = buf.find(b"\r\n", i)
                    return bytes(buf[nl + 2 :]) if nl >= 0 else b""
        found = -1
        found_len = 0
        for end in self.ends:
            idx = buf.find(end, max(start - 2, 0))
            if idx >= 0 and (found < 0 or idx < found):
                found, found_len = idx, len(end)
        body_end = found if found >= 0 else len(buf)
        if self.line_quirk and not self.line_reported:
            lines = bytes(buf[:body_end]).split(b"\r\n")
            if any(len(line) + 2 > 1000 for line in lines[1:]):
                self.line_reported = True
                s.out.append(b"500 5.5.6 Error: line too long\r\n")
        limit = s.max_size_effective()
        if self.early_size and not self.size_reported and limit and body_end - 2 > limit:
            self.size_reported = True
            s.out.append(R_SIZE_EXCEEDED)
            s.stats.messages_rejected_perm += 1
        if found < 0:
            return None
        raw = bytes(buf[2 : found + 2]) if found >= 2 else b""
        rest = bytes(buf[found + found_len :])
        s.mode = CMD
        s.fdata = None
        if self.size_reported:
            s.reset_transaction()
            return rest
        content = raw[1:] if raw.startswith(b"..") else raw
        content = content.replace(b"\r\n..", b"\r\n.")
        overflow = bool(limit) and len(raw) > limit
        s.finish_message(len(raw), overflow, content if s.config.keep_content else None, "DATA")
        return rest
