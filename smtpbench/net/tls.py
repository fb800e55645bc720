"""TLS client contexts for STARTTLS and implicit TLS."""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """Build a client SSL context.

    Verifies the server certificate against ``ca_file`` (or the system store)
    unless ``insecure`` is set, which is meant for test servers only.
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
