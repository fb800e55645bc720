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
import string
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from smtpbench.load.mime import build, text_of_size
from smtpbench.load.split import Part
from smtpbench.protocol.commands import bdat_chunks, encode_data, normalize_lines

#: What a message needs from the server (:attr:`RenderedMessage.needs`): 8-bit octets need
#: 8BITMIME (RFC 6152), non-ASCII headers or addresses need SMTPUTF8 (RFC 6531).
NEEDS_8BITMIME = 1
NEEDS_SMTPUTF8 = 2
#: Entries of a mix pool's pick table: a kind's share of picks is its weight to within 1/4096.
PICK_TABLE = 4096


class SizeSampler(Protocol):
    def sample(self, rng: random.Random) -> int: ...


@dataclass(frozen=True)
class RenderedMessage:
    """One pre-rendered body: ``wire`` is ready to send after the 354, ``bdat`` as BDAT commands and chunks.

    ``needs`` has :data:`NEEDS_8BITMIME` and/or :data:`NEEDS_SMTPUTF8`; ``size_param``
    is the MAIL ``SIZE=`` parameter text (RFC 1870), ready to append.
    """

    size: int  # octets of the message itself (before dot-stuffing)
    wire: bytes
    bdat: tuple[bytes, ...] = ()
    needs: int = 0
    kind: str = "text"
    size_param: str = ""


def rendered(raw: bytes, kind: str = "text", chunk_size: int = 0, data: bool = True) -> RenderedMessage:
    """``raw`` (a whole message) in the forms the session may send: DATA's unless not ``data``, BDAT's with ``chunk_size``."""
    text = normalize_lines(raw)
    head = text.split(b"\r\n\r\n", 1)[0]
    needs = (0 if text.isascii() else NEEDS_8BITMIME) | (0 if head.isascii() else NEEDS_SMTPUTF8)
    bdat = tuple(bdat_chunks(text, chunk_size)) if chunk_size else ()
    wire = encode_data(text) if data else b""
    return RenderedMessage(len(text), wire, bdat, needs, kind, f" SIZE={len(text)}")


def render_message(
    rng: random.Random,
    size: int,
    sender: str,
    recipient: str,
    subject: str,
    headers: dict[str, str],
    chunk_size: int = 0,
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
    msg.set_content(text_of_size(rng, max(size - head_len - 64, 1)), cte="7bit")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n", max_line_length=998))
    return rendered(raw, "text", chunk_size)


class MessagePool:
    """A fixed pool of pre-rendered messages; :meth:`pick` is O(1).

    Without a ``mix``: ``variants`` text messages, sizes drawn from ``sizes``.
    With one: ``variants`` messages of each kind of the mix (built by
    :func:`smtpbench.load.mime.build`), and a table of :data:`PICK_TABLE`
    entries in which each kind fills its share of the weights, so one draw
    picks kind and variant.  ``chunk_size`` > 0 also renders BDAT chunks.
    """

    def __init__(
        self,
        sizes: SizeSampler,
        variants: int,
        seed: int,
        sender: str,
        recipient: str,
        subject: str,
        headers: dict[str, str] | None = None,
        mix: Sequence[MixKind] = (),
        chunk_size: int = 0,
    ) -> None:
        rng = random.Random(seed)
        self.messages: list[RenderedMessage] = []
        if not mix:
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
                        chunk_size,
                    )
                )
            self.table = self.messages
            return
        groups: list[list[RenderedMessage]] = []
        for entry in mix:
            group = []
            for i in range(max(variants, 1)):
                fill = _Placeholders(i)
                raw = build(
                    entry.kind,
                    rng,
                    text_size=(entry.size or sizes).sample(rng),
                    attachment_sizes=[
                        entry.attachment_size.sample(rng) for _ in range(entry.attachments) if entry.attachment_size
                    ],
                    header_text=entry.header_text,
                    body=entry.body,
                    sender=sender.format_map(fill),
                    recipient=recipient.format_map(fill),
                    subject=subject.format_map(fill),
                    headers=dict(headers or {}),
                )
                group.append(rendered(raw, entry.kind, chunk_size))
            groups.append(group)
            self.messages += group
        self.table = _pick_table(groups, [entry.weight for entry in mix])

    def pick(self, rng: random.Random, n: int = 0, session: int = 0) -> RenderedMessage:
        """A message from the pool, chosen with ``rng`` (each kind of a mix by its weight); ``n``, ``session`` unused."""
        table = self.table
        return table[rng.randrange(len(table))]


class MixKind(Protocol):
    """One entry of ``[message] mix`` (:class:`smtpbench.load.message_section.MixEntry`)."""

    @property
    def kind(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def size(self) -> SizeSampler | None: ...
    @property
    def attachment_size(self) -> SizeSampler | None: ...
    @property
    def attachments(self) -> int: ...
    @property
    def header_text(self) -> str: ...
    @property
    def body(self) -> str: ...


def _pick_table(groups: list[list[RenderedMessage]], weights: list[float]) -> list[RenderedMessage]:
    # Largest-remainder shares of PICK_TABLE slots, at least one per kind; a kind's slots
    # cycle through its variants.
    total = sum(weights)
    exact = [PICK_TABLE * w / total for w in weights]
    slots = [max(int(x), 1) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: int(exact[i]) - exact[i])[: max(PICK_TABLE - sum(slots), 0)]:
        slots[i] += 1
    table: list[RenderedMessage] = []
    for group, count in zip(groups, slots, strict=True):
        table += [group[j % len(group)] for j in range(count)]
    return table


class _Placeholders(dict[str, object]):
    def __init__(self, n: int, session: int = 0, rcpt: int = 0, worker: int = 0) -> None:
        super().__init__(n=n, session=session, rcpt=rcpt, worker=worker)


class AddressTemplate:
    """An envelope address template with ``{n}``, ``{session}``, ``{rcpt}``, ``{worker}``.

    Constant templates skip formatting entirely (the common case in big runs).
    In one part of a split run (:mod:`smtpbench.load.split`), ``{n}`` and
    ``{session}`` are the run-wide numbers of the part's own (disjoint across
    parts) and ``{worker}`` is the part's index.
    """

    __slots__ = ("template", "constant", "part", "whole", "_positional")

    def __init__(self, template: str, part: Part = Part()) -> None:
        self.template = template
        self.constant = "{" not in template
        self.part = part
        self.whole = part.count == 1  # numbers are the run's own: no translation per message
        # The same template with positional fields: str.format with positional arguments is
        # about twice as fast as with keywords (it builds no dict), and this runs per message.
        self._positional = positional_template(template, _PLACEHOLDER_ORDER)

    def render(self, n: int, session: int, rcpt: int = 0) -> str:
        """The address for this part's message ``n`` of its session ``session``."""
        if self.constant:
            return self.template
        p = self.part
        if self.whole and self._positional is not None:
            return self._positional.format(n, session, rcpt, p.index)
        if self._positional is not None:
            return self._positional.format(p.number(n), p.number(session), rcpt, p.index)
        return self.template.format(n=p.number(n), session=p.number(session), rcpt=rcpt, worker=p.index)


#: The placeholders of an address template, in the order :meth:`AddressTemplate.render` passes them.
_PLACEHOLDER_ORDER = ("n", "session", "rcpt", "worker")


def positional_template(template: str, names: Sequence[str]) -> str | None:
    """``template`` (a ``str.format`` template with named fields) with each ``names[i]`` field as ``{i}``.

    ``positional_template(t, names).format(*values)`` equals ``t.format(**dict(zip(names, values)))``;
    conversions, format specs, attribute and index access are kept, and literal braces stay escaped.
    None when that cannot be promised (a field not in ``names``, a nested field in a format spec,
    a malformed template): the caller then formats by name.
    """
    out = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for literal, field, spec, conversion in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        head, sep, rest = field.partition(".") if "." in field.split("[", 1)[0] else field.partition("[")
        if head not in names or "{" in (spec or ""):
            return None
        field = f"{names.index(head)}{sep}{rest}"
        out.append("{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)
