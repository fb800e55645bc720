"""``smtpbench sink --proxy-protocol``: read a PROXY protocol header (v1 or v2) before the greeting.

As Postfix does with ``smtpd_upstream_proxy_protocol = haproxy``, every
connection must begin with a header (:mod:`smtpbench.protocol.proxy`); one
without, a malformed one, or none within :data:`PROXY_TIMEOUT` is refused:
counted (``proxy_refused``), logged as one line on stderr (the first
:data:`LOGGED_REFUSALS`), closed without a greeting.  The announced TCP
client becomes the connection's client (``client_addresses``, the
``Received:`` line); ``LOCAL`` and ``UNKNOWN`` keep the real one.

The header is read with ``MSG_PEEK`` and then consumed to its last octet
exactly, so what follows it (an implicit-TLS ClientHello, early SMTP input)
stays in the socket for the session.
"""

from __future__ import annotations

import socket
import sys

import trio

from smtpbench.protocol.proxy import ProxyError, ProxyHeader, decode
from smtpbench.sink.model import SinkStats

#: Seconds a connection has to send its header (Postfix's smtpd_upstream_proxy_timeout is 5 s).
PROXY_TIMEOUT = 10.0
#: Refusals logged to stderr one by one; later ones are only counted.
LOGGED_REFUSALS = 100
_PEEK = 4096


async def read_header(sock: trio.socket.SocketType) -> ProxyHeader:
    """Consume the header at the start of ``sock``'s input, and nothing after it.

    Raises :class:`ProxyError` for a missing or malformed header, the peer
    closing first, or no complete header within :data:`PROXY_TIMEOUT`.
    """
    taken = b""
    with trio.move_on_after(PROXY_TIMEOUT):
        while True:
            peeked = await sock.recv(_PEEK, socket.MSG_PEEK)
            if not peeked:
                raise ProxyError(f"connection closed after {len(taken)} octets, before a complete PROXY header")
            result = decode(taken + peeked)
            want = len(peeked) if result is None else result[1] - len(taken)
            while want > 0:  # peeked octets are there: each recv returns at once
                got = await sock.recv(want)
                if not got:
                    raise ProxyError("connection closed inside the PROXY header")
                taken += got
                want -= len(got)
            if result is not None:
                return result[0]
    raise ProxyError(f"no complete PROXY header within {PROXY_TIMEOUT:g}s ({len(taken)} octets)")


async def client_of(stream: trio.SocketStream, stats: SinkStats) -> str | None:
    """The client address of a connection that must start with a PROXY header; None when refused.

    The announced TCP client, else (LOCAL, UNKNOWN, UDP, UNIX) the real peer.
    A refusal is counted and logged; the caller then closes the stream.
    """
    peer = _peer(stream)
    try:
        header = await read_header(stream.socket)
    except (ProxyError, OSError) as exc:
        stats.proxy_refused += 1
        if stats.proxy_refused <= LOGGED_REFUSALS:
            print(f"smtpbench-sink: refused {peer}: {exc}", file=sys.stderr, flush=True)
        return None
    stats.proxy_headers += 1
    return header.client or peer


def _peer(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "0.0.0.0"
