"""An SMTP client connection over a Trio stream.

:class:`SMTPConnection` joins a Trio stream to the sans-I/O
:class:`~smtpbench.protocol.state.ClientProtocol`: it writes command bytes,
reads until the wanted number of replies has arrived, and bounds every wait
with a deadline (raising :class:`SessionTimeout`, never hanging).  It is used
by the load engine (through :meth:`send` / :meth:`next_reply`) and by the
conformance suite (through :meth:`send_raw` / :meth:`receive_raw`,
which bypass the state machine so that out-of-order probes can be sent).

Speed: bytes go through :mod:`smtpbench.net.fdio`, straight on the socket's
file descriptor while that does not block.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import sys
from collections import deque

import trio

from smtpbench.net.errors import ConnectionClosed, SessionTimeout, TLSHandshakeError
from smtpbench.net.fdio import receive_some, send_all
from smtpbench.protocol.replies import Reply, ReplyParser
from smtpbench.protocol.state import ClientProtocol

#: Linux's IP_BIND_ADDRESS_NO_PORT (in ``socket`` from Python 3.12 on): with it, bind() to a
#: source address leaves the port to connect(), which may then reuse a local port towards
#: other destinations (the 4-tuple differs) instead of reserving it for good at bind time.
BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24) if sys.platform == "linux" else None

SockAddr = tuple[str, int] | tuple[str, int, int, int]


async def resolve(host: str, port: int, family: int = 0) -> tuple[int, SockAddr]:
    """Resolve ``host`` once; return ``(family, sockaddr)`` of the first TCP address.

    ``family`` (``AF_INET``/``AF_INET6``) limits the answer to that family
    (0: any).  Raises :class:`socket.gaierror` when the name does not resolve.
    """
    infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    return int(family), sockaddr  # type: ignore[return-value]


async def connect_tcp(family: int, sockaddr: SockAddr, source: tuple[str, int] | None = None) -> trio.SocketStream:
    """Open a TCP connection to an already resolved address, from ``source`` when given.

    Skips trio's happy-eyeballs machinery and its address resolution (one numeric
    address), which is measurably cheaper per connection under load.  ``source`` is
    a numeric ``(address, 0)``.  Raises ``OSError`` with the kernel's errno
    (ECONNREFUSED, EADDRNOTAVAIL for an address not on this host, EMFILE ...);
    the socket is closed on every failure and on cancellation.
    """
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        if source is not None:
            if BIND_NO_PORT is not None:  # IPv6 sockets take it too (at the IP level)
                raw.setsockopt(socket.IPPROTO_IP, BIND_NO_PORT, 1)
            raw.bind(source)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setblocking(False)
        err = raw.connect_ex(sockaddr)
        if err == errno.EINPROGRESS:
            try:
                # On loopback the handshake is usually over by the time connect() returns: a peer name
                # spares the trip through Trio's I/O manager (register, a loop pass, unregister).
                raw.getpeername()
                err = 0
            except OSError:
                await trio.lowlevel.wait_writable(raw)
                err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"Error connecting to {sockaddr!r}: {os.strerror(err)}")
    except BaseException:
        raw.close()
        raise
    return trio.SocketStream(trio.socket.from_stdlib_socket(raw))


class SMTPConnection:
    """A client session's stream, protocol state and reply reader."""

    __slots__ = ("stream", "protocol", "ready", "raw_log")

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol | None = None) -> None:
        self.stream = stream
        self.protocol = protocol or ClientProtocol()
        #: Replies parsed and paired but not yet taken, oldest first (:meth:`next_reply` takes them;
        #: the load engine's sessions take one straight from here when there is one).
        self.ready: deque[tuple[str, Reply]] = deque()
        #: When a list, every byte string sent (">") and received ("<") is
        #: appended as (direction, bytes): the conformance suite's evidence.
        self.raw_log: list[tuple[str, bytes]] | None = None

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as one send, outside the state machine.

        Returns once every byte is handed to the kernel (as ``send_all``).
        """
        if self.raw_log is not None:
            self.raw_log.append((">", data))
        await send_all(self.stream, data)

    async def send(self, verb: str, line: bytes) -> None:
        """Send one command through the state machine."""
        await self.send_raw(self.protocol.send(verb, line))

    async def send_group(self, commands: list[tuple[str, bytes]]) -> None:
        """Send several commands in one write (an RFC 2920 group)."""
        send = self.protocol.send
        await self.send_raw(b"".join([send(v, line) for v, line in commands]))

    async def receive_raw(self) -> bytes:
        """The next bytes from the server, outside the state machine (logged in ``raw_log``).

        Raises :class:`ConnectionClosed` at EOF and trio's Broken/ClosedResourceError
        on a broken connection; never returns ``b""``.
        """
        # A client reads when it awaits a reply it asked for: let the server answer first.
        data = await receive_some(self.stream, yield_first=True)
        if not data:
            raise ConnectionClosed("server closed the connection")
        if self.raw_log is not None:
            self.raw_log.append(("<", data))
        return data

    async def next_reply(self, timeout: float | None, phase: str = "") -> tuple[str, Reply]:
        """The next ``(verb, reply)``, paired by the state machine.

        A reply already parsed is returned without waiting.  Raises
        :class:`SessionTimeout` after ``timeout`` seconds and
        :class:`ConnectionClosed` on EOF; a 421 closes the protocol state and
        is returned like any reply.  ``timeout=None`` sets no deadline here:
        the caller's cancel scope must bound the wait (the load engine's
        sessions do, see ``smtpbench.load.session``).
        """
        ready = self.ready
        if not ready:
            if timeout is None:
                await self.wait_reply()
            else:
                # A bare CancelScope, not fail_after(): same deadline, less overhead per wait.
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    while not ready:
                        ready.extend(self.protocol.receive(await self.receive_raw()))
                if scope.cancelled_caught:
                    raise SessionTimeout(f"no reply within {timeout:g}s", phase)
        return ready.popleft()

    async def wait_reply(self) -> None:
        """Read until at least one reply is parsed (in :attr:`ready`).

        Sets no deadline: the caller's cancel scope must bound the wait.
        Raises as :meth:`next_reply`.
        """
        ready = self.ready
        while not ready:
            ready.extend(self.protocol.receive(await self.receive_raw()))

    async def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        timeout: float,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """Upgrade to TLS after a 220 to STARTTLS (or at once, for implicit TLS).

        Bytes already buffered from the plaintext side are discarded first
        (RFC 3207 4.2; the CVE-2011-0411 class of injection).
        ``server_hostname`` is sent as SNI (unless an IP address) and the
        certificate verified against it.  ``session`` (one saved from an
        earlier connection over ``context``) is offered for resumption: the
        server may take it or do a full handshake (see ``session_reused``).
        """
        old = self.protocol.parser
        self.protocol.parser = ReplyParser(old.max_line, old.max_reply, old.cache)
        self.ready.clear()
        tls = trio.SSLStream(self.stream, context, server_hostname=server_hostname, https_compatible=False)
        if session is not None:
            # trio forwards this to its SSLObject; it must be set before the handshake.
            tls.session = session
        try:
            with trio.fail_after(timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            raise SessionTimeout(f"TLS handshake not done within {timeout:g}s", "tls") from None
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            # A reset or EOF in the handshake is a TLS failure (a plaintext or broken TLS server), not a "reset".
            reason = exc.__cause__ or exc
            raise TLSHandshakeError(f"TLS handshake failed: {type(reason).__name__}: {reason}", "tls") from exc
        self.stream = tls
        if self.protocol.state.value == "tls":
            self.protocol.tls_established()

    async def aclose(self) -> None:
        """Close the stream without waiting on the peer (never raises, never blocks more than 1 s)."""
        stream = self.stream
        if type(stream) is trio.SocketStream:
            # A plain socket closes synchronously (trio's SocketStream.aclose is close() and a checkpoint): the
            # cancel scopes and the checkpoint of the general path cost ~10 % of a one-message session's CPU.
            stream.socket.close()
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await trio.aclose_forcefully(stream)
