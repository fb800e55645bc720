"""Explaining what a probe sees, from the shared tables (sans I/O).

Every text comes from :mod:`smtpbench.protocol.tables` (``reply_codes.toml``):
reply meanings, RFC 3463 enhanced-code meanings, the codes each command may
get, and what EHLO keywords offer.  This module only picks and formats.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from typing import Any

from smtpbench.probe.model import Event, TLSFacts
from smtpbench.protocol import sasl, tables
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.state import parse_ehlo

#: State-machine verbs that share a command's reply list in the tables.
TABLE_VERB = {"AUTH_RESPONSE": "AUTH", "BDAT_LAST": "BDAT"}

#: How the pseudo-verbs are named to a reader.
VERB_NAME = {
    "CONNECT": "the greeting",
    "DATA_END": "the end of the message data",
    "AUTH_RESPONSE": "an AUTH response",
    "BDAT_LAST": "BDAT LAST",
    "UNSOLICITED": "nothing (unsolicited)",
}


def reply_event(t: float, verb: str, reply: Reply) -> Event:
    """A received-reply event, annotated: meaning, enhanced-code meaning, whether the tables list the code for ``verb``."""
    table_verb = TABLE_VERB.get(verb, verb)
    enhanced = reply.enhanced
    ev = Event(t, "received", reply.text, verb=verb, code=reply.code, lines=list(reply.lines), enhanced=enhanced)
    ev.meaning = tables.reply_meaning(table_verb, reply.code)
    ev.enhanced_meaning = tables.enhanced_meaning(enhanced) if enhanced else None
    if verb == "UNSOLICITED":
        ev.listed = reply.code == 421  # RFC 5321 3.8: only a 421 may come unasked
    else:
        ev.listed = tables.is_expected(table_verb, reply.code)
    if not ev.listed:
        ev.flags.append(f"{reply.code} is not a reply the RFC tables list for {VERB_NAME.get(verb, verb)}")
    if ev.meaning is None:
        ev.flags.append(f"unknown code: RFC 5321 4.2 says to read it by its first digit ({class_name(reply.code)})")
    ev.flags.extend(f"reply defect: {d}" for d in reply.defects)
    if reply.code == 334:
        decoded = sasl.decode(reply.lines[0]) if reply.lines and reply.lines[0] else ""
        ev.notes.append(f"challenge decoded: {decoded!r}" if decoded is not None else "challenge is not base64")
    return ev


def class_name(code: int) -> str:
    """The meaning of a reply's first digit (RFC 5321 4.2.1)."""
    return {
        2: "positive completion",
        3: "positive intermediate",
        4: "transient negative",
        5: "permanent negative",
    }.get(code // 100, "invalid")


def annotation(ev: Event) -> str:
    """The one-line explanation shown under a reply: ``250: meaning; enhanced 2.1.5: meaning``."""
    text = f"{ev.code}: {ev.meaning or class_name(ev.code or 0)}"
    if ev.enhanced:
        text += f"; enhanced {ev.enhanced}: {ev.enhanced_meaning or 'not a registered code'}"
    return text


def ehlo_notes(reply: Reply) -> list[str]:
    """One line per EHLO keyword: the keyword, its parameters, and what it offers (unknown ones say so)."""
    out = []
    for keyword, params in parse_ehlo(reply).items():
        meaning = tables.ehlo_keyword_meaning(keyword, params)
        shown = f"{keyword} {params}".strip()
        if keyword == "SIZE":
            meaning = f"{meaning}: {size_limit(params)}"
        out.append(f"{shown}: {meaning}" if meaning else f"{shown}: not a keyword the tables know (vendor-specific?)")
    return out


def size_limit(params: str) -> str:
    """The SIZE parameter (RFC 1870) in words: the limit in octets and MiB, no fixed limit, or none stated."""
    if not params:
        return "no limit stated"
    if not params.isdigit():
        return f"malformed limit {params!r}"
    octets = int(params)
    return "no fixed limit" if octets == 0 else f"limit {octets} octets ({octets / 1048576:.1f} MiB)"


def auth_shown(line: str, user: str, password: str) -> str:
    """How a sent AUTH line or SASL response is shown: decoded, with the password replaced.

    Guarantees that neither the password nor any base64 form of it appears in the result.
    """
    words = line.split(" ")
    if words[0].upper() == "AUTH":
        if len(words) < 3:
            return line
        return f"{words[0]} {words[1]} {_decoded(words[2], user, password)}"
    return _decoded(line, user, password)


def _decoded(token: str, user: str, password: str) -> str:
    if token == "*":
        return "*  (cancel)"
    text = sasl.decode(token)
    if text is None:
        return "<not base64: hidden>"
    if password and password in text:
        if text == password:
            return "<password hidden>  (decoded)"
        parts = text.split("\0")
        if len(parts) == 3:  # PLAIN: authzid NUL authcid NUL passwd (RFC 4616)
            return f"<authzid={parts[0]!r} user={parts[1]!r} password hidden>  (PLAIN, decoded)"
        return "<hidden: contains the password>"
    if text == user:
        return f"{token}  (decoded: {user!r})"
    if ",p=" in text:  # SCRAM client-final: the proof is derived from the password
        return f"<{text.split(',p=')[0]},p=<proof hidden>>  (SCRAM, decoded)"
    head, _, digest = text.rpartition(" ")
    if head == user and len(digest) == 32:  # CRAM-MD5: user and an HMAC of the password
        return f"<user={user!r} digest hidden>  (CRAM-MD5, decoded)"
    return f"{token}  (decoded: {text!r})"


def _name(rdns: Any) -> str:
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}


def cert_facts(cert: dict[str, Any], facts: TLSFacts) -> None:
    """Fill ``facts`` from a certificate as :meth:`ssl.SSLSocket.getpeercert` decodes it."""
    facts.subject = _name([[(_SHORT.get(k, k), v) for k, v in rdn] for rdn in cert.get("subject", ())])
    facts.issuer = _name([[(_SHORT.get(k, k), v) for k, v in rdn] for rdn in cert.get("issuer", ())])
    facts.not_before = cert.get("notBefore")
    facts.not_after = cert.get("notAfter")
    facts.names = [
        f"{kind}:{_ip(value) if kind == 'IP Address' else value}" for kind, value in cert.get("subjectAltName", ())
    ]


def _ip(text: str) -> str:
    # OpenSSL writes IPv6 names in full (0:0:0:0:0:0:0:1); show the short form, as the DER reader does.
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def validity_note(facts: TLSFacts, now: dt.datetime | None = None) -> str | None:
    """``expired ...`` / ``not valid before ...`` when the validity period does not cover ``now``."""
    if not facts.not_before or not facts.not_after:
        return None
    now_ts = (now or dt.datetime.now(dt.UTC)).timestamp()
    if ssl.cert_time_to_seconds(facts.not_after) < now_ts:
        return f"expired on {facts.not_after}"
    if ssl.cert_time_to_seconds(facts.not_before) > now_ts:
        return f"not valid before {facts.not_before}"
    return None


def tls_lines(facts: TLSFacts) -> list[str]:
    """The TLS summary as shown in the transcript."""
    bits = f" ({facts.bits} bits)" if facts.bits else ""
    out = [f"TLS {facts.version}, cipher {facts.cipher}{bits}"]
    if facts.subject is not None:
        out.append(f"certificate subject: {facts.subject or '(empty)'}")
        out.append(f"certificate issuer:  {facts.issuer or '(empty)'}")
        out.append(f"valid {facts.not_before} .. {facts.not_after}")
        if facts.names:
            out.append("names: " + ", ".join(facts.names))
    out.append("verified: yes" if facts.verified else f"verified: NO ({facts.verify_error})")
    return out
