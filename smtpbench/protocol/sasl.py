"""SASL client responses for SMTP AUTH (RFC 4954), sans I/O.

The one place that encodes credentials for the wire: the load engine, the
conformance suite and ``smtpbench probe`` all build their AUTH payloads here.
"""

from __future__ import annotations

import base64
import binascii

#: The mechanisms smtpbench can authenticate with, in order of preference.
MECHANISMS = ("PLAIN", "LOGIN")


def b64(text: str) -> str:
    """``text`` UTF-8 encoded, then base64."""
    return base64.b64encode(text.encode()).decode("ascii")


def plain_response(user: str, password: str) -> str:
    """The base64 PLAIN initial response for ``user``/``password`` (RFC 4616, empty authzid)."""
    return b64(f"\0{user}\0{password}")


def decode(token: str) -> str | None:
    """A base64 SASL token (a 334 challenge or a client response) as text; ``None`` when it is not base64."""
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
