"""Server-side address and parameter syntax (RFC 5321 4.1.2, 4.1.3; RFC 3461 4).

Pure functions over ``str`` (command lines decoded with ``surrogateescape``),
used by the server role (:mod:`smtpbench.protocol.server`) to choose
between 250, 501 and 553.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_LABEL_US = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_DOMAIN_US = re.compile(rf"{_LABEL_US}(?:\.{_LABEL_US})*\Z")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
# The everyday shape of a path, ``<dot-atom@ldh.domain>`` without parameters,
# recognised by one regex on the hot path; anything else takes the full route.
# '%' and '!' are left out so relay-hack local parts never match.
_SAFE_ATEXT = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]"
_SIMPLE = rf"<({_SAFE_ATEXT}+(?:\.{_SAFE_ATEXT}+)*)@({_LABEL}(?:\.{_LABEL})*)>\Z"
SIMPLE_MAIL = re.compile(r"(?i:FROM):" + _SIMPLE)
SIMPLE_RCPT = re.compile(r"(?i:TO):" + _SIMPLE)
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_ROUTE = re.compile(r"@[^,:@]+(?:,@[^,:@]+)*:")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")


def is_ascii(text: str) -> bool:
    """True when every character is 7-bit ASCII."""
    return text.isascii()


def _asciified(text: str) -> str:
    # U-labels and UTF-8 local parts (RFC 6531) validate like their ASCII shape.
    return _NON_ASCII.sub("a", text)


def address_literal(text: str) -> str | None:
    """Normalise ``[1.2.3.4]`` / ``[IPv6:...]`` / ``[tag:x]``; None when not a valid literal."""
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1]
    if inner[:5].upper() == "IPV6:":
        try:
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        except ValueError:
            return None
    try:
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        pass
    return text if _GENERAL_LITERAL.match(inner) and ":" in inner else None


def valid_domain(text: str, *, utf8: bool = False, allow_underscore: bool = False) -> bool:
    """True for an LDH domain (U-labels too when ``utf8``) or an address literal."""
    if text.startswith("["):
        return address_literal(text) is not None
    if len(text) > 255:
        return False
    if utf8:
        text = _asciified(text)
    return bool((_DOMAIN_US if allow_underscore else _DOMAIN).match(text))


def valid_local_part(text: str, *, utf8: bool = False) -> bool:
    """True for a dot-string or a quoted-string local part (4.1.2)."""
    if utf8:
        text = _asciified(text)
    return bool(_DOT_STRING.match(text) or _QUOTED.match(text))


def strip_route(path: str) -> tuple[str, bool] | None:
    """Remove an ``@a,@b:`` source route; return ``(mailbox, had_route)`` or None if malformed."""
    if not path.startswith("@"):
        return path, False
    m = _ROUTE.match(path)
    if m is None:
        return None
    return path[m.end() :], True


def split_mailbox(mailbox: str) -> tuple[str, str]:
    """Split at the last ``@`` outside quotes: ``(local, domain)``; domain is "" if absent."""
    if mailbox.startswith('"'):
        end = mailbox.rfind('"')
        if end > 0:
            rest = mailbox[end + 1 :]
            if rest.startswith("@"):
                return mailbox[: end + 1], rest[1:]
            return mailbox, ""
    local, at, domain = mailbox.rpartition("@")
    if not at:
        return mailbox, ""
    return local, domain


def unquote_local(local: str) -> str:
    """The local part with quoting removed (``"a b"`` -> ``a b``)."""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def valid_xtext(text: str) -> bool:
    """RFC 3461 4 xtext: printable ASCII except ``+`` and ``=``, or ``+XX`` upper-case hex."""
    return bool(_XTEXT.match(text))


_NOTIFY_ITEMS = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def valid_notify(value: str) -> bool:
    """``NEVER`` alone, or a comma list of SUCCESS / FAILURE / DELAY (case-insensitive)."""
    items = [v.upper() for v in value.split(",")]
    if items == ["NEVER"]:
        return True
    return bool(items) and all(i in _NOTIFY_ITEMS for i in items) and len(set(items)) == len(items)


def valid_orcpt(value: str) -> bool:
    """``addr-type ";" xtext`` with an atom addr-type, at most 500 characters."""
    kind, semi, addr = value.partition(";")
    return bool(semi) and bool(re.fullmatch(r"[A-Za-z0-9-]+", kind)) and bool(addr) and valid_xtext(addr)
