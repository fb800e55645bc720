"""Exception types of the protocol core.

Every way a peer can break the protocol has its own type so that callers
(the load engine's error counters, the conformance verdicts) can classify a
failure without parsing messages.
"""

from __future__ import annotations


class SMTPProtocolError(Exception):
    """Base class: the peer sent something that is not valid SMTP."""

    kind = "protocol"


class MalformedReplyError(SMTPProtocolError):
    """A reply line does not match ``code [SP/-] text CRLF``."""


class MismatchedReplyCodeError(SMTPProtocolError):
    """Lines of one multi-line reply carry different codes."""


class ReplyTooLongError(SMTPProtocolError):
    """A reply line or a whole reply exceeded its hard cap.

    Raised before the oversized data is buffered further, so a hostile server
    cannot make the client hold more than the cap in memory.
    """


class LocalProtocolError(Exception):
    """We (the client) tried to do something the state machine forbids."""
