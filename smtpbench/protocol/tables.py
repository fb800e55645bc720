"""The command/reply-code tables, loaded once from ``reply_codes.toml``.

One source of truth: the load engine asks :func:`is_expected` to count
unexpected replies, the conformance suite asks the same function (and
:func:`allowed_codes`) to judge a server.  Lookups are dictionary hits on
frozensets built at import, cheap enough for the load engine's hot path.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class CommandReplies:
    """The replies RFC 5321 (and extensions) list for one command."""

    verb: str
    rfc: str
    success: frozenset[int]
    intermediate: frozenset[int]
    failure: frozenset[int]
    extension: frozenset[int]

    @property
    def listed(self) -> frozenset[int]:
        """Every code named for this command, before the any-command codes."""
        return self.success | self.intermediate | self.failure | self.extension


def _load() -> dict[str, Any]:
    text = resources.files("smtpbench.protocol").joinpath("reply_codes.toml").read_text("utf-8")
    return tomllib.loads(text)


RAW: dict[str, Any] = _load()
ANY_COMMAND: frozenset[int] = frozenset(RAW["any_command"]["codes"])
ALSO_COMMON: frozenset[int] = frozenset(RAW["any_command"]["also_common"])
LIMITS: dict[str, int] = dict(RAW["limits"])
TIMEOUTS: dict[str, float] = {k: float(v) for k, v in RAW["timeouts"].items()}

COMMANDS: dict[str, CommandReplies] = {
    verb: CommandReplies(
        verb=verb,
        rfc=entry.get("rfc", ""),
        success=frozenset(entry.get("success", ())),
        intermediate=frozenset(entry.get("intermediate", ())),
        failure=frozenset(entry.get("failure", ())),
        extension=frozenset(entry.get("extension", ())),
    )
    for verb, entry in RAW["commands"].items()
}

_EXPECTED: dict[str, frozenset[int]] = {verb: c.listed | ANY_COMMAND | ALSO_COMMON for verb, c in COMMANDS.items()}
# The client state machine names the final chunk BDAT_LAST (it ends the transaction); same replies as BDAT.
_EXPECTED["BDAT_LAST"] = _EXPECTED["BDAT"]


def allowed_codes(verb: str, strict: bool = False) -> frozenset[int]:
    """Codes a server may send to ``verb``.

    ``strict`` keeps only the command's own list plus the RFC 5321 4.3.2
    any-command codes (421, 500, 501); otherwise the commonly legitimate
    502/503/504/530 are admitted too.  Unknown verbs allow every code.
    """
    c = COMMANDS.get(verb)
    if c is None:
        return frozenset(range(200, 600))
    return c.listed | ANY_COMMAND if strict else _EXPECTED[verb]


def is_expected(verb: str, code: int) -> bool:
    """True when ``code`` is a reply the tables list for ``verb``."""
    allowed = _EXPECTED.get(verb)
    return True if allowed is None else code in allowed


def is_success(verb: str, code: int) -> bool:
    """True when ``code`` is a listed success reply for ``verb``."""
    c = COMMANDS.get(verb)
    return c is not None and code in c.success


# --- human-readable meanings (annotation: ``smtpbench probe``) -------------

REPLY_TEXT: dict[int, str] = {int(k): v for k, v in RAW["reply_text"].items()}
REPLY_TEXT_BY_COMMAND: dict[tuple[str, int], str] = {
    (verb, int(code)): text for verb, texts in RAW["reply_text_by_command"].items() for code, text in texts.items()
}
ENHANCED_CLASS: dict[str, str] = dict(RAW["enhanced_class"])
ENHANCED_SUBJECT: dict[str, str] = dict(RAW["enhanced_subject"])
ENHANCED_TEXT: dict[str, str] = dict(RAW["enhanced_text"])
EHLO_KEYWORDS: dict[str, str] = dict(RAW["ehlo_keywords"])


def reply_meaning(verb: str | None, code: int) -> str | None:
    """What ``code`` means in answer to ``verb``: the command-specific text when the tables have one, else the code's own.

    ``None`` for a code no table names (RFC 5321 4.2: then only its first digit has meaning).
    """
    if verb is not None:
        text = REPLY_TEXT_BY_COMMAND.get((verb, code))
        if text is not None:
            return text
    return REPLY_TEXT.get(code)


def enhanced_meaning(status: str) -> str | None:
    """``"2.1.5"`` -> ``"Success; Addressing Status: Destination address valid"`` (RFC 3463, IANA registry).

    A registered subject with an unregistered detail still gets its class and
    subject names; ``None`` when even the class is not 2, 4 or 5.
    """
    klass, _, rest = status.partition(".")
    subject, _, _detail = rest.partition(".")
    if klass not in ENHANCED_CLASS:
        return None
    parts = [ENHANCED_CLASS[klass]]
    if subject in ENHANCED_SUBJECT:
        detail = ENHANCED_TEXT.get(f"X.{rest}")
        parts.append(
            f"{ENHANCED_SUBJECT[subject]}: {detail}" if detail else f"{ENHANCED_SUBJECT[subject]} (unregistered detail)"
        )
    return "; ".join(parts)


def ehlo_keyword_meaning(keyword: str, params: str = "") -> str | None:
    """What an EHLO keyword offers, with its parameters filled in; ``None`` for keywords the tables do not know."""
    text = EHLO_KEYWORDS.get(keyword.upper())
    if text is None:
        return None
    return text.replace("{param}", params or "(none given)")
