"""The [message] section of a profile: generated messages (size, mix), corpora, DSN parameters.

Its own module (``sections.py`` holds the other sections): :class:`MessageConfig`
and the tables it nests, :class:`MixEntry` (one weighted kind of the message
mix) and :class:`DsnConfig` (RFC 3461 parameters).  To add a key, see
:mod:`smtpbench.load.sections`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, PlainSerializer, model_validator

from smtpbench.config import shown
from smtpbench.fields import Invalid, Table, apply, checker, choice, got, key, nested, number, template, whole
from smtpbench.load.sizes import FixedSize, SizeDistribution

PLACEHOLDERS = ("n", "session", "rcpt", "worker")
ENVID_PLACEHOLDERS = ("run", "n", "session")
MAX_RECIPIENTS = 1000
MAX_ATTACHMENTS = 20
#: Message kinds of the mix (smtpbench.load.mime builds each).
KINDS = ("text", "html", "attachment")
#: Header fields a corpus message may get rewritten.
REWRITABLE = ("From", "To", "Message-ID")
DEFAULT_ATTACHMENT_SIZE = FixedSize(100 * 1024)


class RecipientRange(Table):
    """A uniform number of recipients per message."""

    min: Annotated[int, whole(1, MAX_RECIPIENTS)] = key(1, "Fewest recipients.")
    max: Annotated[int, whole(1, MAX_RECIPIENTS)] | None = key(None, "Most recipients (>= min).")


def _recipients(value: Any) -> tuple[int, int]:
    if not isinstance(value, dict):
        count: int = apply(whole(1, MAX_RECIPIENTS), value)
        return count, count
    span = nested(RecipientRange, value)
    hi = span.min if span.max is None else span.max
    if hi < span.min:
        raise Invalid(f"max ({hi}) is below min ({span.min})", expected="max >= min", loc=("max",))
    return span.min, hi


_HEADER_NAME = re.compile(r"[!-9;-~]+")
_RESERVED_HEADERS = {"from": "message.from", "to": "message.to", "subject": "message.subject"}


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise got(value, "a table")
    for name, field in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise Invalid(
                "is not a valid header field name", expected="printable ASCII without ':' or spaces", loc=(name,)
            )
        if name.lower() in _RESERVED_HEADERS:
            raise Invalid("is set by smtpbench", hint=f"use {_RESERVED_HEADERS[name.lower()]}", loc=(name,))
        if not isinstance(field, str):
            raise got(field, "a string").at(name)
        if "\r" in field or "\n" in field:
            raise Invalid("contains a line break", expected="a single-line value", loc=(name,))
    return dict(value)


_HeaderInput = Annotated[dict[Annotated[str, Field(pattern=r"^[!-9;-~]+$")], str], Field()]


class MixEntry(Table):
    """One kind of generated message, drawn with probability weight / total weight."""

    kind: Annotated[str, choice(*KINDS)] = key(
        doc="text (text/plain), html (multipart/alternative: text and HTML) or attachment "
        "(multipart/mixed: a text part and base64 attachments)."
    )
    weight: Annotated[float, number(0, positive=True)] = key(1.0, "Relative weight, > 0.")
    size: SizeDistribution | None = key(
        None, "Size of the text (the whole message for text and html); default: [message] size."
    )
    attachment_size: SizeDistribution | None = key(
        None, "attachment only: size of each attachment before base64 (default 100KiB)."
    )
    attachments: Annotated[int, whole(1, MAX_ATTACHMENTS)] = key(1, "attachment only: attachments per message.")
    header_text: Annotated[str, choice("ascii", "rfc2047", "utf8")] = key(
        "ascii",
        "Subject and display names: ascii, rfc2047 (non-ASCII as RFC 2047 encoded-words, 7-bit) or utf8 "
        "(raw UTF-8 headers, RFC 6532: needs SMTPUTF8).",
    )
    body: Annotated[str, choice("7bit", "8bit", "quoted-printable")] = key(
        "7bit",
        "Text parts: 7bit (ASCII), 8bit (UTF-8 sent as is: needs 8BITMIME) or quoted-printable (UTF-8, 7-bit).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind != "attachment":
            for name in ("attachment_size", "attachments"):
                if self.given(name):
                    raise Invalid('only applies to kind = "attachment"', hint="remove it", loc=(name,))
        elif self.attachment_size is None:
            self.attachment_size = DEFAULT_ATTACHMENT_SIZE
        return self

    def inapplicable(self) -> set[str]:
        """Attachment keys but for attachments."""
        return set() if self.kind == "attachment" else {"attachment_size", "attachments"}


_NOTIFY = ("SUCCESS", "FAILURE", "DELAY")


def _notify(value: Any) -> str:
    expected = 'NEVER, or a comma-separated list of SUCCESS, FAILURE, DELAY (e.g. "FAILURE,DELAY")'
    if not isinstance(value, str):
        raise got(value, expected)
    words = [w.strip().upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return "NEVER"
    if not words or any(w not in _NOTIFY for w in words) or len(set(words)) != len(words):
        raise Invalid(f"{shown(value)} is not allowed", expected=expected)
    return ",".join(words)


class DsnConfig(Table):
    """RFC 3461 delivery status notification parameters, sent when the server advertises DSN."""

    notify: Annotated[str, checker(_notify, str)] | None = key(
        None, 'NOTIFY on each RCPT: "NEVER" or a list like "FAILURE,DELAY".'
    )
    ret: Annotated[str, choice("FULL", "HDRS")] | None = key(None, "RET on MAIL: FULL or HDRS.")
    envid: Annotated[str, template(ENVID_PLACEHOLDERS, address=False)] | None = key(
        None, "ENVID on MAIL, a template with {run} (run id), {n} and {session}; sent as xtext, at most 100 octets."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.notify is None and self.ret is None and self.envid is None:
            raise Invalid("is empty", expected="at least one of notify, ret, envid")
        return self


def _corpus(value: Any) -> str:
    expected = "a folder of .eml files, an mbox file or a Maildir"
    if not isinstance(value, str) or not value.strip():
        raise got(value, expected)
    if not Path(value).exists():
        raise Invalid(f"{shown(value, 80)} not found", expected=expected)
    return value


class MessageConfig(Table):
    """What each message looks like.  Templates may use {n} (message number), {session}, {rcpt}
    (recipient index) and {worker}, with format specs such as {n:06d}; literal braces are {{ and }}."""

    size: SizeDistribution = key(
        "10KiB",
        doc='Message size (at most 1GiB): "10KiB", {distribution = "uniform", min, max}, '
        '{distribution = "lognormal", median, sigma, min, max} (max defaults to 100 x median) '
        'or [{size = "1KiB", weight = 70}, ...].',
    )
    recipients: Annotated[
        tuple[int, int],
        checker(_recipients, Annotated[int, Field(ge=1, le=MAX_RECIPIENTS)] | RecipientRange),
        PlainSerializer(lambda r: r[0] if r[0] == r[1] else {"min": r[0], "max": r[1]}),
    ] = key(1, "Recipients per message: 3 or {min = 1, max = 5}, 1..1000.")
    from_template: Annotated[str, template(PLACEHOLDERS, address=True)] = key(
        "sender{n}@smtpbench.example", alias="from", doc="Envelope and header sender (a template)."
    )
    to_template: Annotated[str, template(PLACEHOLDERS, address=True)] = key(
        "user{n}@example.test", alias="to", doc="Recipient addresses (a template)."
    )
    subject: Annotated[str, template(PLACEHOLDERS, address=False)] = key(
        "smtpbench message {n}", "Subject header (a template)."
    )
    variants: Annotated[int, whole(1, 10000)] = key(32, "Distinct bodies pre-rendered (per kind of the mix).")
    headers: Annotated[dict[str, str], checker(_headers, _HeaderInput)] = key(
        default_factory=dict,
        json_schema_extra={"additionalProperties": False},  # names outside patternProperties are refused
        doc='Extra header fields, {X-Foo = "bar"} (literal values).',
    )
    mix: Annotated[tuple[MixEntry, ...], Field(min_length=1)] = key(
        (),
        validate_default=False,
        doc='Weighted kinds of generated messages, e.g. [{kind = "text", weight = 60}, {kind = "html", weight = 25}, '
        '{kind = "attachment", weight = 15, attachment_size = {distribution = "lognormal", median = "200KiB"}}] '
        "(default: text only).",
    )
    corpus: Annotated[str, checker(_corpus, Annotated[str, Field(min_length=1)])] | None = key(
        None,
        "Replay real messages instead: a folder of .eml files, an mbox file or a Maildir, indexed (not loaded) "
        "and sampled with the seed; headers are kept. Not with size, mix, variants, subject, headers.",
    )
    rewrite: tuple[Annotated[str, choice(*REWRITABLE)], ...] = key(
        (),
        "corpus only: header fields to replace, any of From, To (the envelope's); Message-ID is always the run's own (with X-Smtpbench-Id).",
    )
    dsn: DsnConfig | None = key(
        None,
        'RFC 3461 parameters, e.g. {notify = "FAILURE,DELAY", ret = "HDRS", envid = "{run}-{n}"} '
        "(sent when the server advertises DSN).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.corpus is not None:
            for name in ("size", "mix", "variants", "subject", "headers"):
                if self.given(name):
                    hint = "corpus messages keep their own content and headers; remove it or the corpus"
                    raise Invalid("does not apply with corpus", hint=hint, loc=(name,))
        elif self.rewrite:
            raise Invalid("only applies with corpus", hint="remove it, or set message.corpus", loc=("rewrite",))
        if len(set(self.rewrite)) != len(self.rewrite):
            raise Invalid("names a field twice", expected="each of From, To, Message-ID at most once", loc=("rewrite",))
        return self

    @property
    def recipients_min(self) -> int:
        """Fewest recipients of a message."""
        return self.recipients[0]

    @property
    def recipients_max(self) -> int:
        """Most recipients of a message."""
        return self.recipients[1]

    def inapplicable(self) -> set[str]:
        """An empty mix and rewrite; with a corpus, the keys of generated messages."""
        skip = {name for name in ("mix", "rewrite") if not getattr(self, name)}
        return skip | ({"size", "variants", "subject", "headers"} if self.corpus is not None else set())

    def toml(self) -> dict[str, Any]:
        """The table as written in a profile; an empty mix and rewrite are left out."""
        data = super().toml()
        if self.mix:
            data["mix"] = [entry.toml() for entry in self.mix]
        return data
