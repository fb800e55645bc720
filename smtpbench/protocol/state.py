"""The client-side SMTP session state machine, sans I/O.

Theory of operation
-------------------
This module owns every state transition of a client session; nothing else
changes ``ClientProtocol.state``.  The transitions are data, the
:data:`TRANSITIONS` table: for each ``(state, verb)`` that a client may send,
the state after a positive reply (2yz/3yz) and after a negative one.  A verb
absent from the table for the current state is a local protocol error: the
load engine would be about to break the protocol itself.

The greeting is modelled as a pseudo-command ``CONNECT`` awaiting its reply,
and the end of message data as ``DATA_END``, so every reply is paired with
exactly one "command" and the phases of a session are uniform.

Pipelining (RFC 2920): commands may be sent before earlier replies arrive.
:meth:`ClientProtocol.send` checks the command against the *optimistic*
state (every pending command succeeding); replies are matched in order to
the pending queue, and the real state follows each reply.  When a pipelined
command fails, the optimistic state is recomputed from the real one, so the
next command is checked against what the server actually agreed to.

A 421 reply to anything, or an unsolicited 421, closes the session (3.8).
"""

from __future__ import annotations

import enum
from collections import deque

from smtpbench.protocol.errors import LocalProtocolError, SMTPProtocolError
from smtpbench.protocol.replies import Reply, ReplyParser


class State(enum.Enum):
    GREETING = "greeting"  # connected, awaiting the 220
    GREETED = "greeted"  # greeting received, EHLO/HELO needed
    READY = "ready"  # EHLO/HELO accepted, no transaction open
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # 354 received: message content expected
    TLS = "tls"  # 220 to STARTTLS received: TLS handshake expected
    AUTH = "auth"  # 334 received: SASL response expected
    REFUSED = "refused"  # 554/521 greeting: only QUIT is meaningful
    CLOSED = "closed"

    # Members are singletons: identity hashing (in C) instead of Enum's hash of the name (in
    # Python), since every command and reply looks a (state, verb) pair up in TRANSITIONS.
    __hash__ = object.__hash__


S = State
_SESSION = (S.GREETED, S.READY, S.MAIL, S.RCPT)
_NEUTRAL = ("NOOP", "VRFY", "EXPN", "HELP")

TRANSITIONS: dict[tuple[State, str], tuple[State, State]] = {
    (S.GREETING, "CONNECT"): (S.GREETED, S.REFUSED),
    (S.TLS, "TLS_DONE"): (S.GREETED, S.CLOSED),
    (S.READY, "MAIL"): (S.MAIL, S.READY),
    (S.MAIL, "RCPT"): (S.RCPT, S.MAIL),
    (S.RCPT, "RCPT"): (S.RCPT, S.RCPT),
    (S.RCPT, "DATA"): (S.DATA, S.RCPT),
    (S.DATA, "DATA_END"): (S.READY, S.READY),
    # RFC 3030: a BDAT chunk keeps the transaction open; BDAT ... LAST ends it when accepted.
    # A refused chunk leaves the transaction in an indeterminate state that only RSET clears.
    (S.RCPT, "BDAT"): (S.RCPT, S.RCPT),
    (S.RCPT, "BDAT_LAST"): (S.READY, S.RCPT),
    (S.READY, "STARTTLS"): (S.TLS, S.READY),
    (S.READY, "AUTH"): (S.AUTH, S.READY),
    (S.AUTH, "AUTH_RESPONSE"): (S.AUTH, S.READY),
    (S.REFUSED, "QUIT"): (S.CLOSED, S.CLOSED),
    (S.GREETED, "RSET"): (S.GREETED, S.GREETED),
}
for _s in _SESSION:
    TRANSITIONS[(_s, "EHLO")] = (S.READY, _s)
    TRANSITIONS[(_s, "HELO")] = (S.READY, _s)
    TRANSITIONS[(_s, "LHLO")] = (S.READY, _s)  # LMTP (RFC 2033 4.1): smtpbench.protocol.lmtp
    TRANSITIONS[(_s, "QUIT")] = (S.CLOSED, S.CLOSED)
    for _v in _NEUTRAL:
        TRANSITIONS[(_s, _v)] = (_s, _s)
    if _s is not S.GREETED:
        TRANSITIONS[(_s, "RSET")] = (S.READY, _s)


#: The verbs whose every positive (2yz/3yz) reply simply moves to the table's positive state:
#: :meth:`ClientProtocol._on_reply` takes these without its general checks (EHLO, DATA, AUTH
#: and the rest take the general path).
_PLAIN_POSITIVE = frozenset({"MAIL", "RCPT", "DATA_END", "BDAT", "BDAT_LAST", "RSET", "CONNECT", *_NEUTRAL})
#: The only commands with an intermediate (3yz) reply: DATA's 354 (RFC 5321 4.3.2) and AUTH's 334 (RFC 4954).
_INTERMEDIATE = {"DATA": 354, "AUTH": 334, "AUTH_RESPONSE": 334}


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """Map each EHLO keyword (upper-cased, 4.1.1.1) to its parameter string."""
    ext: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            ext[keyword.upper()] = params
    return ext


class ClientProtocol:
    """One client session's protocol state, fed bytes, producing bytes.

    Guarantees: :meth:`send` refuses any command the state machine does not
    allow (:class:`LocalProtocolError`); :meth:`receive` returns replies
    paired with the command they answer, in order, and raises
    :class:`SMTPProtocolError` for malformed, oversized or unsolicited replies, and for an intermediate (3yz)
    reply to a command that has none (the replies are out of step with the commands).
    """

    __slots__ = ("state", "_optimistic", "pending", "parser", "extensions")

    def __init__(self, parser: ReplyParser | None = None) -> None:
        self.state = State.GREETING
        self._optimistic = State.GREETED  # assuming the pending greeting is a 220
        self.pending: deque[str] = deque(["CONNECT"])
        self.parser = parser or ReplyParser()
        self.extensions: dict[str, str] = {}

    def can_send(self, verb: str) -> bool:
        """True when ``verb`` is allowed once every pending command succeeds."""
        return (self._optimistic, verb) in TRANSITIONS

    def send(self, verb: str, line: bytes) -> bytes:
        """Record that ``line`` (a ``verb`` command) is being sent; return it."""
        try:
            self._optimistic = TRANSITIONS[(self._optimistic, verb)][0]
        except KeyError:
            raise LocalProtocolError(f"{verb} not allowed in state {self._optimistic.value}") from None
        self.pending.append(verb)
        return line

    def receive(self, data: bytes) -> list[tuple[str, Reply]]:
        """Feed received bytes; return ``(verb, reply)`` for each complete reply."""
        out = []
        for reply in self.parser.feed(data):
            if not self.pending:
                if reply.code == 421:
                    self._close()
                    out.append(("UNSOLICITED", reply))
                    continue
                raise SMTPProtocolError(f"unsolicited reply {reply.code}")
            verb = self.pending.popleft()
            self._on_reply(verb, reply)
            out.append((verb, reply))
        return out

    def tls_established(self) -> None:
        """Call after the TLS handshake: the session restarts (RFC 3207 4.2)."""
        self.state = self._optimistic = TRANSITIONS[(State.TLS, "TLS_DONE")][0]
        self.extensions = {}

    def _close(self) -> None:
        self.state = self._optimistic = State.CLOSED
        self.pending.clear()

    def _on_reply(self, verb: str, reply: Reply) -> None:
        if reply.code < 300 and verb in _PLAIN_POSITIVE:  # most replies: as the general path below
            transition = TRANSITIONS.get((self.state, verb))
            if transition is not None:
                self.state = transition[0]
                return
        if reply.code == 421:
            self._close()
            return
        if 300 <= reply.code < 400 and _INTERMEDIATE.get(verb) != reply.code:
            # A 354 paired with RCPT (a server that answers a pipelined group out of order) means the server
            # reads message content while this side would send commands: nothing after it can be trusted.
            raise SMTPProtocolError(
                f"{reply.code} in reply to {verb}: an intermediate reply that answers no such command, so the "
                "replies are out of step with the commands (RFC 2920 3.1: replies come in command order)"
            )
        before = self.state
        positive, negative = TRANSITIONS.get((before, verb), (before, before))
        if verb == "AUTH" or verb == "AUTH_RESPONSE":
            # 334 continues the SASL exchange; 235 or any refusal ends it in READY.
            after = S.AUTH if reply.code == 334 else S.READY
        elif verb == "DATA":
            # 354 means the server now reads message content, whatever the envelope's replies were (a
            # server may answer DATA so with no recipient accepted: RFC 2920 3.1 warns of it).
            after = S.DATA if reply.code == 354 else negative
        else:
            after = positive if reply.code < 400 else negative
        if verb == "EHLO" and reply.code < 400:
            self.extensions = parse_ehlo(reply)
        self.state = after
        if after is not positive:
            # A refused command: the optimistic view restarts from reality.
            opt = after
            for v in self.pending:
                opt = TRANSITIONS.get((opt, v), (opt, opt))[0]
            self._optimistic = opt
