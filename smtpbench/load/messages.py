"""Message bodies and envelopes for the load engine.

Bodies are realistic RFC 5322 messages built with the standard library's
``email`` package, rendered and dot-stuffed *before* the run starts: the hot
path only picks one of the ready byte strings and formats the envelope
addresses.  The pool holds ``variants`` bodies whose sizes are drawn from the
profile's size distribution with the run's seed, so a run is reproducible.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from smtpbench.protocol.commands import encode_data


class SizeSampler(Protocol):
    def sample(self, rng: random.Random) -> int: ...


@dataclass(frozen=True)
class RenderedMessage:
    """One pre-rendered body: ``wire`` is ready to send after the 354."""

    size: int  # octets of the message itself (before dot-stuffing)
    wire: bytes


_WORDS = [
    "load",
    "test",
    "message",
    "body",
    "smtp",
    "server",
    "latency",
    "throughput",
    "queue",
    "relay",
    "mailbox",
    "delivery",
    "envelope",
    "header",
    "transaction",
    "session",
    "pipeline",
    "benchmark",
    "histogram",
]


def _text_of_size(rng: random.Random, size: int) -> str:
    # Lines of ~72 characters of words, like real text; some start with "."
    # so that dot-stuffing is exercised on every run.
    lines: list[str] = []
    total = 0
    while total < size:
        words: list[str] = []
        width = 0
        while width < 70:
            w = rng.choice(_WORDS)
            words.append(w)
            width += len(w) + 1
        line = " ".join(words)
        if rng.random() < 0.02:
            line = "." + line
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines)


def render_message(
    rng: random.Random, size: int, sender: str, recipient: str, subject: str, headers: dict[str, str]
) -> RenderedMessage:
    """Build one message of about ``size`` octets (headers included)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    # No Message-ID here: every message gets its own (with X-Smtpbench-Id) when sent,
    # see smtpbench.delivery.ids.MessageIds.stamp.
    for k, v in headers.items():
        msg[k] = v
    head_len = len(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    msg.set_content(_text_of_size(rng, max(size - head_len - 64, 1)), cte="7bit")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n", max_line_length=998))
    return RenderedMessage(size=len(raw), wire=encode_data(raw))


class MessagePool:
    """A fixed pool of pre-rendered messages; :meth:`pick` is O(1)."""

    def __init__(
        self,
        sizes: SizeSampler,
        variants: int,
        seed: int,
        sender: str,
        recipient: str,
        subject: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        rng = random.Random(seed)
        self.messages: list[RenderedMessage] = []
        for i in range(max(variants, 1)):
            fill = _Placeholders(i)
            self.messages.append(
                render_message(
                    rng,
                    sizes.sample(rng),
                    sender.format_map(fill),
                    recipient.format_map(fill),
                    subject.format_map(fill),
                    dict(headers or {}),
                )
            )

    def pick(self, rng: random.Random) -> RenderedMessage:
        """A message from the pool, chosen with ``rng``."""
        return self.messages[rng.randrange(len(self.messages))]


class _Placeholders(dict[str, object]):
    def __init__(self, n: int, session: int = 0, rcpt: int = 0, worker: int = 0) -> None:
        super().__init__(n=n, session=session, rcpt=rcpt, worker=worker)


class AddressTemplate:
    """An envelope address template with ``{n}``, ``{session}``, ``{rcpt}``, ``{worker}``.

    Constant templates skip formatting entirely (the common case in big runs).
    """

    __slots__ = ("template", "constant")

    def __init__(self, template: str) -> None:
        self.template = template
        self.constant = "{" not in template

    def render(self, n: int, session: int, rcpt: int = 0, worker: int = 0) -> str:
        """The address for message ``n`` of session ``session``."""
        if self.constant:
            return self.template
        return self.template.format(n=n, session=session, rcpt=rcpt, worker=worker)
