"""What a probe records: transcript events, the TLS facts, the outcome, and the exit codes.

The exit codes are part of the command's interface (README, "smtpbench
probe" / "Exit codes"): scripts branch on them, so each failure class has
its own code and the numbers never change meaning.  They start at 10 so as
not to collide with the codes every sub-command shares (0-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The steps of one probe, in order; ``--quit-after`` names one of them.
STEPS = ("connect", "banner", "ehlo", "tls", "auth", "mail", "rcpt", "data")

EXIT_ACCEPTED = 0
EXIT_CONNECT = 10  # no TCP connection, or no greeting on it
EXIT_REFUSED_SESSION = 11  # greeting or EHLO/HELO refused
EXIT_TLS = 12  # STARTTLS not offered or refused, handshake failed, certificate not verified
EXIT_AUTH = 13  # AUTH not offered, mechanism refused, or credentials refused
EXIT_SENDER = 14  # MAIL FROM refused
EXIT_RECIPIENT = 15  # a RCPT TO refused (even when others were accepted)
EXIT_MESSAGE = 16  # DATA, BDAT or the reply after the message data refused
EXIT_BROKEN = 17  # the dialogue broke after the greeting: timeout, connection lost, malformed reply

#: Exit code of a refusal (or failure) at each step.
STEP_EXIT = {
    "connect": EXIT_CONNECT,
    "banner": EXIT_REFUSED_SESSION,
    "ehlo": EXIT_REFUSED_SESSION,
    "tls": EXIT_TLS,
    "auth": EXIT_AUTH,
    "mail": EXIT_SENDER,
    "rcpt": EXIT_RECIPIENT,
    "data": EXIT_MESSAGE,
}


@dataclass
class Event:
    """One line of the transcript.

    ``kind`` is ``sent``, ``received`` or ``info``.  ``t`` is seconds since
    the connection attempt started.  Sent events carry the text as it may be
    shown (secrets already replaced); received events carry the reply
    (``code``, ``lines``) and its annotation: ``notes`` explain, ``flags`` warn.
    """

    t: float
    kind: str
    text: str
    verb: str | None = None
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    enhanced: str | None = None
    meaning: str | None = None
    enhanced_meaning: str | None = None
    listed: bool | None = None
    notes: list[str] = field(default_factory=list)
    #: What is wrong with a reply: a code not listed for the command, an unknown code, hygiene defects.
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The event as JSON (README, "--json shape"): keys with no value are left out."""
        out: dict[str, Any] = {"t_ms": round(self.t * 1000, 3), "kind": self.kind}
        if self.kind == "received":
            out.update(verb=self.verb, code=self.code, lines=self.lines, enhanced=self.enhanced)
            out.update(meaning=self.meaning, enhanced_meaning=self.enhanced_meaning, listed=self.listed)
        else:
            out["text"] = self.text
            if self.verb:
                out["verb"] = self.verb
        if self.notes:
            out["notes"] = self.notes
        if self.flags:
            out["flags"] = self.flags
        return out


@dataclass
class TLSFacts:
    """What the TLS handshake established (all strings as shown to the user)."""

    version: str | None = None
    cipher: str | None = None
    bits: int | None = None
    subject: str | None = None
    issuer: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    names: list[str] = field(default_factory=list)
    verified: bool = False
    #: Why the certificate is not verified (``None`` when it is).
    verify_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The facts as a JSON object."""
        return dict(self.__dict__)


@dataclass
class Outcome:
    """How the probe ended.

    ``result`` is ``accepted`` (the message was taken), ``stopped`` (the
    ``--quit-after`` step was reached), ``refused`` (the server said no:
    ``reply`` holds the deciding reply) or ``failed`` (no usable answer:
    ``reason`` says why).  ``step`` is the last step reached.
    """

    step: str
    result: str
    exit_code: int
    reason: str = ""
    code: int | None = None
    reply_text: str | None = None
    total: float = 0.0

    def line(self) -> str:
        """The one-line summary printed at the end."""
        head = {"accepted": "ACCEPTED", "stopped": "STOPPED", "refused": "REFUSED", "failed": "FAILED"}[self.result]
        deciding = f": {self.code} {self.reply_text}" if self.code is not None else ""
        reason = f" ({self.reason})" if self.reason else ""
        return f"{head} at {self.step}{deciding}{reason} in {self.total * 1000:.1f} ms, exit {self.exit_code}"

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON object."""
        return {
            "step": self.step,
            "result": self.result,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "code": self.code,
            "reply": self.reply_text,
            "total_ms": round(self.total * 1000, 3),
        }
