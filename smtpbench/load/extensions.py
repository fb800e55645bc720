"""What each message asks of the server at load: SIZE, BODY=8BITMIME, SMTPUTF8, DSN and BDAT.

After EHLO a session reduces the server's keywords to a bit mask
(:func:`capabilities`).  Each pre-rendered message says what it needs
(:attr:`~smtpbench.load.messages.RenderedMessage.needs`): 8-bit octets need
8BITMIME (RFC 6152), non-ASCII header fields or addresses need SMTPUTF8
(RFC 6531).  :meth:`MessageExtensions.missing` names what the server lacks
for a message (the session then skips it, counted as error kind
``message_unsupported``, rather than send it broken), and
:meth:`MessageExtensions.mail_params` builds the MAIL parameters: ``SIZE=``
whenever SIZE is advertised (RFC 1870), ``BODY=8BITMIME``, ``SMTPUTF8``, and
the DSN ``RET``/``ENVID`` when DSN is advertised (RFC 3461; ``NOTIFY`` goes on
each RCPT).  Every parameter used is counted per message as
``extension.<KEYWORD>`` (summary.json ``extensions``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from smtpbench.load.messages import NEEDS_8BITMIME, NEEDS_SMTPUTF8, MessagePool, RenderedMessage

if TYPE_CHECKING:  # the profile's models import pydantic; the engine has loaded them already
    from smtpbench.load.message_section import MessageConfig
    from smtpbench.load.profile import Profile


class Pool(Protocol):
    """Where a session's messages come from: :class:`MessagePool` or :class:`smtpbench.load.corpus.CorpusPool`."""

    def pick(self, rng: random.Random, n: int = 0, session: int = 0) -> RenderedMessage: ...


HAS_8BITMIME = NEEDS_8BITMIME  # the same bits: ``needs & ~caps`` is what is missing
HAS_SMTPUTF8 = NEEDS_SMTPUTF8
HAS_SIZE = 4
HAS_DSN = 8
HAS_CHUNKING = 16
_KEYWORDS = {"8BITMIME": HAS_8BITMIME, "SMTPUTF8": HAS_SMTPUTF8, "SIZE": HAS_SIZE, "DSN": HAS_DSN}
_KEYWORDS["CHUNKING"] = HAS_CHUNKING
#: Error kind of a message the server cannot take (summary.json ``errors``).
UNSUPPORTED = "message_unsupported"
#: Error kind of a session with ``chunking = "on"`` whose server does not advertise CHUNKING.
NO_CHUNKING = "chunking_unsupported"
ENVID_MAX = 100


def capabilities(extensions: dict[str, str]) -> int:
    """The EHLO keywords (upper-cased, as :func:`smtpbench.protocol.state.parse_ehlo` gives them) as a bit mask."""
    caps = 0
    for keyword, bit in _KEYWORDS.items():
        if keyword in extensions:
            caps |= bit
    return caps


def xtext(text: str, limit: int = ENVID_MAX) -> str:
    """``text`` as RFC 3461 4 xtext (``+``, ``=`` and octets outside ``!``..``~`` as ``+XX``), cut to at most
    ``limit`` characters without splitting a ``+XX``."""
    out = ""
    for b in text.encode("utf-8"):
        piece = chr(b) if 33 <= b <= 126 and b not in (43, 61) else f"+{b:02X}"
        if len(out) + len(piece) > limit:
            break
        out += piece
    return out


@dataclass
class MessageExtensions:
    """Run-wide choices: DSN parameters (None: no DSN) and what the envelope addresses need."""

    notify: str | None = None
    ret: str | None = None
    envid: str | None = None  # template: {run} already filled in, {n} and {session} left
    address_needs: int = 0  # NEEDS_SMTPUTF8 when the address templates are not ASCII

    def __post_init__(self) -> None:
        self.dsn = self.notify is not None or self.ret is not None or self.envid is not None
        self.notify_param = f" NOTIFY={self.notify}" if self.notify else ""
        self.ret_param = f" RET={self.ret}" if self.ret else ""
        self.envid_constant = self.envid is not None and "{" not in self.envid

    def missing(self, msg: RenderedMessage, caps: int) -> str:
        """The keyword the server lacks for ``msg`` ("8BITMIME", "SMTPUTF8"), or "" when it can take it."""
        lacking = (msg.needs | self.address_needs) & ~caps
        if not lacking:
            return ""
        return "8BITMIME" if lacking & NEEDS_8BITMIME else "SMTPUTF8"

    def mail_params(self, msg: RenderedMessage, caps: int, n: int, session: int, counts: Counter[str]) -> str:
        """The MAIL FROM parameters of message ``n`` (leading space included, "" for none); counts each one used."""
        params = ""
        if caps & HAS_SIZE:
            params = msg.size_param
            counts["extension.SIZE"] += 1
        needs = msg.needs | self.address_needs
        if needs:
            if needs & NEEDS_8BITMIME:
                params += " BODY=8BITMIME"
                counts["extension.8BITMIME"] += 1
            if needs & NEEDS_SMTPUTF8:
                params += " SMTPUTF8"
                counts["extension.SMTPUTF8"] += 1
        if self.dsn and caps & HAS_DSN:
            params += self.ret_param
            if self.envid is not None:
                envid = self.envid if self.envid_constant else self.envid.format(n=n, session=session)
                params += " ENVID=" + xtext(envid)
            counts["extension.DSN"] += 1
        return params

    def rcpt_params(self, caps: int) -> str:
        """The RCPT TO parameters (DSN's NOTIFY when the server advertises DSN)."""
        return self.notify_param if caps & HAS_DSN else ""


# --- set-up before the run (engine) -----------------------------------------


def message_extensions(message: MessageConfig, run_id: str) -> MessageExtensions:
    """The run's :class:`MessageExtensions` from ``[message]`` (DSN, and what the address templates need)."""
    templates = message.from_template + message.to_template
    needs = 0 if templates.isascii() else NEEDS_SMTPUTF8
    dsn = message.dsn
    if dsn is None:
        return MessageExtensions(address_needs=needs)
    envid = None if dsn.envid is None else dsn.envid.replace("{run}", run_id.replace("{", "{{").replace("}", "}}"))
    return MessageExtensions(dsn.notify, dsn.ret, envid, needs)


def message_pool(profile: Profile) -> Pool:
    """The run's messages: the corpus (indexed, read when picked) or the pre-rendered pool of the size or mix.

    BDAT chunks are rendered only when ``[smtp] chunking`` is not off.  Raises
    ConfigError when the corpus cannot be read or is empty.
    """
    m, smtp = profile.message, profile.smtp
    chunk_size = 0 if smtp.chunking == "off" else smtp.chunk_size
    if m.corpus is not None:
        from smtpbench.load.corpus import CorpusPool, index_corpus

        index = index_corpus(m.corpus)
        return CorpusPool(index, m.rewrite, m.from_template, m.to_template, chunk_size, data=smtp.chunking != "on")
    seed = profile.workload.seed
    return MessagePool(
        m.size, m.variants, seed, m.from_template, m.to_template, m.subject, dict(m.headers), m.mix, chunk_size
    )


def split_counts(counters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``counters`` without the per-message usage counts, and those as summary.json's ``transfer`` (messages
    per method: data, bdat), ``extensions`` (messages that used each MAIL/RCPT extension) and ``unsupported``
    (messages not sent, by the extension the server lacked)."""
    counts = dict(counters.get("counts", {}))
    usage: dict[str, dict[str, int]] = {"transfer": {"data": 0, "bdat": 0}, "extensions": {}, "unsupported": {}}
    for name in list(counts):
        group, dot, what = name.partition(".")
        section = {"transfer": "transfer", "extension": "extensions", "unsupported": "unsupported"}.get(group)
        if dot and section is not None:
            usage[section][what] = counts.pop(name)
    return {**counters, "counts": counts}, usage


def join_counts(summary: dict[str, Any]) -> dict[str, int]:
    """The usage counts a summary's ``transfer``/``extensions``/``unsupported`` were made from (:func:`split_counts`'s
    inverse), so that merging parts sums them."""
    prefixes = {"transfer": "transfer", "extensions": "extension", "unsupported": "unsupported"}
    return {
        f"{prefix}.{what}": n for section, prefix in prefixes.items() for what, n in summary.get(section, {}).items()
    }
