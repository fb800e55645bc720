"""The ``[target.tls_options]`` table of a profile: protocol versions, SNI and session resumption.

Its own module (``sections.py`` holds [target] itself, which nests this
table and checks the rules that involve its other keys: only with TLS, and
``sni = ""`` only with ``insecure``).  The sessions' side is
:mod:`smtpbench.load.tls_sessions`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from smtpbench.config import shown, type_name
from smtpbench.fields import Invalid, Ratio, Table, checker, choice, key
from smtpbench.net.tls import TLS_VERSIONS

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
SERVER_NAME_FORM = 'a DNS host name like "mail.example.com" (letters, digits, hyphens; "" for no SNI)'


def server_name(value: Any) -> str:
    """A name to send as SNI (RFC 6066 3: a DNS host name, ASCII, no trailing dot, not an IP address), or ""."""
    if not isinstance(value, str):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected=SERVER_NAME_FORM)
    if value == "":
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise Invalid(
            f"{shown(value)} is an IP address, which SNI cannot carry (RFC 6066 3)", expected=SERVER_NAME_FORM
        )
    if not value.isascii():
        raise Invalid(f"{shown(value)} is not ASCII", hint="write an internationalised name as its xn-- A-label")
    if value.endswith("."):
        raise Invalid(f"{shown(value)} ends with a dot", hint="SNI carries the name without the trailing dot")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in value.split(".")):
        raise Invalid(f"{shown(value)} is not a host name", expected=SERVER_NAME_FORM)
    return value


TlsVersion = Annotated[str, choice(*TLS_VERSIONS)]


class TlsOptions(Table):
    """TLS details (only with tls = "starttls" or "implicit"): versions, SNI, session resumption."""

    min_version: TlsVersion | None = key(None, "Lowest protocol version offered (default: TLSv1.2).")
    max_version: TlsVersion | None = key(None, "Highest protocol version offered (default: the highest, TLSv1.3).")
    sni: Annotated[str, checker(server_name, Annotated[str, Field(max_length=253)])] | None = key(
        None,
        "Server name sent in the handshake (SNI); the certificate is verified against it. Default: target.host "
        'when it is a name (none for an IP address). "" sends none (only with insecure = true).',
    )
    resume: Ratio = key(
        0.0,
        "Share of sessions (drawn with the seed) that offer a TLS session saved from an earlier session of the run "
        "for resumption (abbreviated handshake); 0 = every handshake is full.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        order = list(TLS_VERSIONS)
        lo, hi = self.min_version, self.max_version
        if lo is not None and hi is not None and order.index(lo) > order.index(hi):
            raise Invalid(
                f"{lo} is above max_version {hi}", expected="min_version <= max_version", loc=("min_version",)
            )
        return self
