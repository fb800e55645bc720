"""Sans-I/O SMTP protocol core: replies, commands, code tables, both roles.

The client role is :mod:`~smtpbench.protocol.state` (a state machine fed
replies); the server role is :mod:`~smtpbench.protocol.server` (fed command
bytes, producing replies).  They share the reply, command, syntax and table
modules.

Nothing here opens a socket, reads a clock or imports another smtpbench
package; everything above (``net``, ``load``, ``conform``, ``sink``) builds on it.
"""

from smtpbench.protocol.errors import (
    LocalProtocolError,
    MalformedReplyError,
    MismatchedReplyCodeError,
    ReplyTooLongError,
    SMTPProtocolError,
)
from smtpbench.protocol.replies import Reply, ReplyParser

__all__ = [
    "LocalProtocolError",
    "MalformedReplyError",
    "MismatchedReplyCodeError",
    "Reply",
    "ReplyParser",
    "ReplyTooLongError",
    "SMTPProtocolError",
]
