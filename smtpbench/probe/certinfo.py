"""Reading the facts a user needs from a DER certificate, without verifying it (sans I/O).

With ``--insecure`` the handshake does not verify, and then Python's
``getpeercert()`` returns an empty dict: only the DER octets are available.
This is a minimal DER reader (X.509, RFC 5280 4.1) for exactly what the
probe shows: subject, issuer, validity and the subjectAltName names.  It
returns the same shape as ``getpeercert()`` so one formatter serves both.
Anything it cannot read raises :class:`ValueError`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

_OID_NAMES = {
    "2.5.4.3": "commonName",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "countryName",
    "2.5.4.7": "localityName",
    "2.5.4.8": "stateOrProvinceName",
    "2.5.4.10": "organizationName",
    "2.5.4.11": "organizationalUnitName",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_SAN_OID = "2.5.29.17"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, vs, ve = _tlv(data, start)
        out.append((tag, vs, ve))
        start = ve
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise ValueError("empty OID")
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _name(data: bytes, start: int, end: int) -> tuple[tuple[tuple[str, str], ...], ...]:
    rdns = []
    for _, s, e in _children(data, start, end):  # SET OF AttributeTypeAndValue
        rdn = []
        for _, s2, e2 in _children(data, s, e):
            (_, os_, oe), (_, vs, ve) = _children(data, s2, e2)[:2]
            oid = _oid(data[os_:oe])
            rdn.append((_OID_NAMES.get(oid, oid), data[vs:ve].decode("utf-8", "replace")))
        rdns.append(tuple(rdn))
    return tuple(rdns)


def _time(tag: int, raw: bytes) -> str:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ (RFC 5280 4.1.2.5.1: 50-99 are 19xx)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        raise ValueError("bad time")
    y, mo, d, h, mi, s = (int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)))
    return f"{_MONTHS[mo - 1]} {d:2d} {h:02d}:{mi:02d}:{s:02d} {y} GMT"  # OpenSSL's format, as getpeercert()


def _san(data: bytes, start: int, end: int) -> tuple[tuple[str, str], ...]:
    out = []
    for tag, s, e in _children(data, start, end):
        if tag == 0x82:
            out.append(("DNS", data[s:e].decode("ascii", "replace")))
        elif tag == 0x87:
            out.append(("IP Address", str(ipaddress.ip_address(data[s:e]))))
        elif tag == 0x81:
            out.append(("email", data[s:e].decode("ascii", "replace")))
    return tuple(out)


def decode_der(der: bytes) -> dict[str, Any]:
    """``subject``, ``issuer``, ``notBefore``, ``notAfter`` and ``subjectAltName`` of a DER certificate, as ``getpeercert()`` gives them."""
    _, cs, ce = _tlv(der, 0)
    _, ts, te = _tlv(der, cs)  # tbsCertificate
    fields = _children(der, ts, te)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 6:
        raise ValueError("not an X.509 certificate")
    issuer, validity, subject = fields[2], fields[3], fields[4]
    (t1, s1, e1), (t2, s2, e2) = _children(der, validity[1], validity[2])[:2]
    out: dict[str, Any] = {
        "subject": _name(der, subject[1], subject[2]),
        "issuer": _name(der, issuer[1], issuer[2]),
        "notBefore": _time(t1, der[s1:e1]),
        "notAfter": _time(t2, der[s2:e2]),
    }
    for tag, s, e in fields[6:]:
        if tag != 0xA3:  # [3] extensions
            continue
        (_, xs, xe) = _children(der, s, e)[0]
        for _, es, ee in _children(der, xs, xe):
            parts = _children(der, es, ee)
            if _oid(der[parts[0][1] : parts[0][2]]) == _SAN_OID:
                _, vs, ve = parts[-1]  # the OCTET STRING holding the GeneralNames
                _, gs, ge = _tlv(der, vs)
                out["subjectAltName"] = _san(der, gs, ge)
    return out
