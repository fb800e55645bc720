"""Generated message text, and the kinds of ``[message] mix``, built with the standard library's ``email`` package.

Each builder returns the whole message as octets (CRLF line ends, lines under
998 octets), from the run's seeded ``random.Random``, so a pool is
reproducible.  Everything here runs before the run starts (the pool is
pre-rendered): nothing is on the hot path.

* ``text``: one text/plain part;
* ``html``: multipart/alternative, a text/plain part and its text/html twin;
* ``attachment``: multipart/mixed, a text/plain part and N base64
  attachments of random octets (sizes drawn from ``attachment_size``).

``header_text`` decides how non-ASCII Subject and display names travel:
``ascii`` (none), ``rfc2047`` (encoded-words: the message stays 7-bit) or
``utf8`` (raw UTF-8, RFC 6532: the message needs SMTPUTF8).  ``body`` decides
the text parts: ``7bit`` (ASCII), ``8bit`` (UTF-8 sent as is: the message
needs 8BITMIME) or ``quoted-printable`` (UTF-8 in 7-bit).
"""

from __future__ import annotations

import email.utils
import random
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

WORDS = [
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


def text_of_size(rng: random.Random, size: int, vocabulary: list[str] = WORDS) -> str:
    """About ``size`` octets (UTF-8) of CRLF-separated lines of ~72 characters of ``vocabulary`` words.

    Some lines start with "." so that dot-stuffing is exercised on every run.
    """
    lines: list[str] = []
    total = 0
    while total < size:
        words: list[str] = []
        width = 0
        while width < 70:
            w = rng.choice(vocabulary)
            words.append(w)
            width += len(w) + 1
        line = " ".join(words)
        if rng.random() < 0.02:
            line = "." + line
        lines.append(line)
        total += len(line.encode()) + 2
    return "\r\n".join(lines)


#: Words of non-ASCII text (Latin, Greek, Cyrillic, CJK, symbols): 2-, 3- and 4-octet UTF-8 sequences.
_UTF8_WORDS = [*WORDS, "größe", "übermittlung", "café", "naïve", "κείμενο", "почта", "日本語", "メール", "✓", "€uro"]
_NAMES_ASCII = ["Load Tester", "Queue Manager", "Relay Operator"]
_NAMES_UTF8 = ["Jürgen Müller", "Zoë Ægir", "山田 太郎", "Анна Петрова"]
_SUBJECT_UTF8 = " – Prüfbericht ✓ 日本語"
_ATTACHMENT_TYPES = [("application", "pdf", "report"), ("image", "png", "picture"), ("application", "zip", "archive")]
# Room left for the headers the builder does not measure (MIME-Version, boundaries): the target is approximate.
_SLACK = 64


def _policy(header_text: str) -> object:
    base = SMTPUTF8 if header_text == "utf8" else SMTP
    return base.clone(max_line_length=998)


def _text(rng: random.Random, size: int, body: str) -> str:
    return text_of_size(rng, max(size, 1), WORDS if body == "7bit" else _UTF8_WORDS)


def _html(text: str) -> str:
    paragraphs = "\r\n".join(f"<p>{line}</p>" for line in text.split("\r\n"))
    return f"<!DOCTYPE html>\r\n<html><body>\r\n{paragraphs}\r\n</body></html>"


def _cte(body: str) -> str:
    return {"7bit": "7bit", "8bit": "8bit", "quoted-printable": "quoted-printable"}[body]


def build(
    kind: str,
    rng: random.Random,
    *,
    text_size: int,
    attachment_sizes: list[int],
    header_text: str,
    body: str,
    sender: str,
    recipient: str,
    subject: str,
    headers: dict[str, str],
) -> bytes:
    """One message of ``kind`` (text, html, attachment) as CRLF octets.

    Guarantees: parses back with :mod:`email` into that MIME structure; 7-bit
    unless ``body == "8bit"`` or ``header_text == "utf8"`` (or the addresses
    are not ASCII); the text parts hold about ``text_size`` octets; each
    attachment decodes to exactly its size in ``attachment_sizes``.
    """
    policy = _policy(header_text)
    non_ascii = header_text != "ascii"
    msg = EmailMessage(policy=policy)  # type: ignore[arg-type]
    names = _NAMES_UTF8 if non_ascii else _NAMES_ASCII
    msg["From"] = Address(display_name=rng.choice(names), addr_spec=sender)
    msg["To"] = Address(display_name=rng.choice(names), addr_spec=recipient)
    msg["Subject"] = subject + (_SUBJECT_UTF8 if non_ascii else "")
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{rng.getrandbits(64):016x}@smtpbench.example>"
    for k, v in headers.items():
        msg[k] = v
    head = len(msg.as_bytes())
    charset = "us-ascii" if body == "7bit" else "utf-8"
    cte = _cte(body)
    if kind == "html":
        text = _text(rng, (text_size - head - _SLACK) // 2, body)
        msg.set_content(text, charset=charset, cte=cte)
        msg.add_alternative(_html(text), subtype="html", charset=charset, cte=cte)
    else:
        msg.set_content(_text(rng, text_size - head - _SLACK, body), charset=charset, cte=cte)
    if kind == "attachment":
        for i, size in enumerate(attachment_sizes):
            maintype, subtype, stem = _ATTACHMENT_TYPES[i % len(_ATTACHMENT_TYPES)]
            name = f"{stem}-{i + 1}{'-größe' if non_ascii else ''}.{subtype}"
            msg.add_attachment(rng.randbytes(size), maintype=maintype, subtype=subtype, filename=name)
    if msg.is_multipart():  # the email package draws boundaries from the unseeded global random
        msg.set_boundary(f"=_smtpbench_{rng.getrandbits(64):016x}")
    return msg.as_bytes()
