"""Failures of a network session, each with a stable ``kind`` for the results.

The kinds are the keys of ``summary.json``'s ``errors`` map, so they are part of
the results format (README, "Error kinds").
"""

from __future__ import annotations

import errno
import socket
import ssl

import trio

from smtpbench.protocol.errors import SMTPProtocolError


class SessionError(Exception):
    """A session ended abnormally; ``kind`` says how."""

    kind = "error"

    def __init__(self, message: str, phase: str = "") -> None:
        super().__init__(message)
        self.phase = phase


class SessionTimeout(SessionError):
    """A phase exceeded its deadline."""

    kind = "timeout"


class ConnectionClosed(SessionError):
    """The server closed the connection when a reply was expected."""

    kind = "closed"


class TLSHandshakeError(SessionError):
    """The TLS handshake failed: refused, not TLS at all, or the peer hung up mid-handshake."""

    kind = "tls"


class AuthFailed(SessionError):
    """AUTH did not succeed: refused credentials (any 4yz/5yz but 421) or a server that failed to prove itself."""

    kind = "auth"


class ReplyError(SessionError):
    """The server refused something (4yz or 5yz) that the session needed."""

    def __init__(self, message: str, phase: str, code: int) -> None:
        super().__init__(message, phase)
        self.code = code
        self.kind = "temp_fail" if code < 500 else "perm_fail"
        if code == 421:
            self.kind = "server_shutdown"


#: One line of advice per error kind that the client's host causes, not the server (final output).
HINTS = {
    "emfile": "out of file descriptors: raise the open-files limit (ulimit -n) or run fewer sessions at once",
    "eaddrnotavail": (
        "no local address/port to connect from: spread sessions over more local addresses "
        "(target.source_addresses; each must exist on this host) or reuse connections (messages_per_session)"
    ),
}


def classify(exc: BaseException) -> str:
    """Map any exception met during a session to an error kind.

    Guarantees a short, stable string: ``refused``, ``resolve``, ``timeout``,
    ``reset``, ``closed``, ``tls``, ``auth``, ``protocol``, ``emfile``, ``eaddrnotavail``,
    ``temp_fail``, ``perm_fail``, ``server_shutdown`` or ``os_error``.
    """
    if isinstance(exc, SessionError):
        return exc.kind
    if isinstance(exc, SMTPProtocolError):
        return "protocol"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "resolve"
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    cause = exc
    # trio wraps OS errors (BrokenResourceError, "all attempts to connect failed"):
    # the real reason is in the cause chain.
    for _ in range(5):
        if isinstance(cause, ssl.SSLError):
            return "tls"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return "reset"
        if isinstance(cause, OSError) and cause.errno in (errno.EMFILE, errno.ENFILE):
            return "emfile"
        if isinstance(cause, OSError) and cause.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
            return "eaddrnotavail"
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "refused"
        nxt = cause.__cause__ or cause.__context__
        if nxt is None:
            break
        cause = nxt
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return "reset"
    if isinstance(exc, OSError):
        return "os_error"
    return "error"
