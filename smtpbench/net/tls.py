"""TLS client contexts for STARTTLS and implicit TLS."""

from __future__ import annotations

import ssl

#: Protocol versions a profile may pin (``[target.tls_options]``), as OpenSSL and ``SSLObject.version()`` name them.
TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def ca_file_problem(path: str) -> str | None:
    """Why the existing file ``path`` cannot verify servers (no PEM certificate in it, unreadable), or None.

    Checked before any traffic: the context is otherwise built at the first handshake, where a bad file was a
    traceback (run) or an error in every check (conform).
    """
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        return f"CA file {path!r} holds no usable certificate: {reason}"
    return None


def client_context(
    ca_file: str | None = None,
    insecure: bool = False,
    min_version: str | None = None,
    max_version: str | None = None,
) -> ssl.SSLContext:
    """Build a client SSL context.

    Verifies the server certificate against ``ca_file`` (or the system store)
    unless ``insecure`` is set, which is meant for test servers only.
    ``min_version``/``max_version`` (keys of :data:`TLS_VERSIONS`) bound the
    protocol versions offered; None keeps Python's default (TLS 1.2 and up).
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = TLS_VERSIONS[min_version]
    if max_version is not None:
        ctx.maximum_version = TLS_VERSIONS[max_version]
    return ctx
