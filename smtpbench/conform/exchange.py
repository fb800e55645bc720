"""What one exchange of a conformance session was: a write, the replies read for it, and why fewer came.

:class:`Exchange` records are kept by :class:`~smtpbench.conform.probe.Probe` for every check: the runner grades
reply hygiene (G-01) over them and writes transcripts from their :meth:`~Exchange.lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from smtpbench.conform.evidence import redact_command, render
from smtpbench.protocol.replies import Reply

#: Returns every message the server has delivered so far (content after DATA, unstuffed).
DeliveryOracle = Callable[[], Sequence[bytes]]


class CheckAborted(Exception):
    """The check could not be carried out (no connection, no greeting...): verdict ``error``."""


@dataclass
class Exchange:
    """One write and the replies read for it.

    ``verb`` is the command the write was (``None`` when it was not one, e.g.
    body octets); ``closed``/``timed_out``/``error`` say why fewer replies came
    than wanted.
    """

    sent: bytes
    verb: str | None
    replies: list[Reply] = field(default_factory=list)
    closed: bool = False
    timed_out: bool = False
    error: str | None = None
    secret: bool = False
    wanted: int = 1

    @property
    def reply(self) -> Reply | None:
        """The first reply, if any."""
        return self.replies[0] if self.replies else None

    @property
    def code(self) -> int | None:
        """The first reply's code, if any."""
        return self.replies[0].code if self.replies else None

    @property
    def codes(self) -> list[int]:
        """Every reply code, in order."""
        return [r.code for r in self.replies]

    @property
    def command(self) -> str:
        """The first line sent, for reasons (``MAIL FROM:<a@x>``)."""
        if self.secret:
            return redact_command(self.sent)
        if self.verb == "DATA_END":
            return f"message data ({len(self.sent)} octets)"
        first = self.sent.split(b"\n", 1)[0].rstrip(b"\r")
        return render(": ", first)[0][2:] if first else "(empty line)"

    @property
    def outcome(self) -> str:
        """What happened instead of a reply, or the codes received."""
        if self.replies:
            return ", ".join(str(c) for c in self.codes)
        if self.error:
            return f"malformed reply ({self.error})"
        if self.closed:
            return "connection closed"
        if self.timed_out:
            return "no reply"
        return "nothing read"

    def lines(self) -> list[str]:
        """Evidence lines: what was sent and every reply received."""
        out = [f"C: {redact_command(self.sent)}"] if self.secret else (render("C: ", self.sent) if self.sent else [])
        for r in self.replies:
            out.extend(render("S: ", r.raw))
        if self.error:
            out.append(f"!: malformed reply: {self.error}")
        elif self.closed and len(self.replies) < self.wanted:
            out.append("!: connection closed by server")
        elif self.timed_out and len(self.replies) < self.wanted:
            out.append("!: no reply before the timeout")
        return out


def verb_of(data: bytes) -> str | None:
    """The command verb of a write (upper-cased), or ``None`` when it is not a command line."""
    word = data.split(b"\r\n", 1)[0].split(b" ", 1)[0].split(b"\n", 1)[0]
    if not word or not word.isalpha() or not word.isascii():
        return None
    return word.decode("ascii").upper()
