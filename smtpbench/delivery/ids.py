"""The per-message id: ``X-Smtpbench-Id: <run-id>.<worker>.<n>``, also in ``Message-ID``.

Message bodies are rendered once before the run (:mod:`smtpbench.load.messages`);
the id differs per message, so it is not part of the body: :meth:`MessageIds.stamp`
prepends the two header fields to the ready wire bytes.  That costs one small
``bytes`` formatting and one copy of the message per message, measured at
well under 1 % of a message's CPU on the hot path.
"""

from __future__ import annotations

import re

HEADER = "X-Smtpbench-Id"
#: Message-ID right-hand side (RFC 5322 3.6.4: dot-atom-text).
ID_DOMAIN = "smtpbench.example"
#: The id in a header block: case-insensitive field name, first occurrence (RFC 5322 fields may be folded;
#: ours never are).
_FIELD = re.compile(rb"(?im)^x-smtpbench-id:[ \t]*([!-~]+)")


class MessageIds:
    """Makes the id header of message ``n`` of one run and one worker."""

    __slots__ = ("prefix", "_fmt")

    def __init__(self, run_id: str, worker: int = 0) -> None:
        #: ``<run-id>.<worker>.``: every id of this run and worker starts with it.
        self.prefix = f"{run_id}.{worker}."
        p = self.prefix.encode("ascii")
        self._fmt = (
            b"Message-ID: <" + p + b"%d@" + ID_DOMAIN.encode() + b">\r\n" + HEADER.encode() + b": " + p + b"%d\r\n"
        )

    def id_of(self, n: int) -> str:
        """The id text of message ``n``."""
        return f"{self.prefix}{n}"

    def stamp(self, n: int, wire: bytes) -> bytes:
        """``wire`` (a message ready to send after 354) with message ``n``'s id fields prepended."""
        return self._fmt % (n, n) + wire

    def chunk(self, n: int) -> bytes:
        """Message ``n``'s id fields as a first RFC 3030 chunk: ``BDAT <len>`` CRLF and the fields."""
        fields = self._fmt % (n, n)
        return b"BDAT %d\r\n" % len(fields) + fields

    def size(self, n: int) -> int:
        """Octets the id fields add to message ``n``."""
        return len(self._fmt) - 4 + 2 * len(str(n))  # two "%d" become two copies of n


def find_id(content: bytes) -> str | None:
    """The ``X-Smtpbench-Id`` value in the header block of ``content``, or None.

    Only the header block (up to the first empty line) is searched, so a
    bounced or quoted message in a body never counts.
    """
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    m = _FIELD.search(content, 0, len(content) if end < 0 else end + 1)
    return m.group(1).decode("ascii") if m else None


def parse_number(ident: str, prefix: str) -> int | None:
    """The message number of ``ident`` if it starts with ``prefix`` (one run and worker), else None."""
    if not ident.startswith(prefix):
        return None
    rest = ident[len(prefix) :]
    if not rest.isascii() or not rest.isdigit() or len(rest) > 15:
        return None
    return int(rest)
