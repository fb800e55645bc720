"""One sink connection's I/O: the Trio loop around a :class:`~smtpbench.sink.knobs.SinkConnection`.

Theory of operation
-------------------
On a plain TCP socket the session parks in the sink's shared
:class:`~smtpbench.sink.poller.Poller`, which reads, executes and answers
for every parked session in one task, and hands the session back to this
loop for whatever must wait (latency, STARTTLS, the end).  Here, reads and
writes go straight to the socket while it is ready
(:mod:`smtpbench.net.fdio`).  Either way each receive is handed whole to the protocol (``receive_data``), which
executes every complete command in it; the replies it produced go out as
*one* send afterwards, which is RFC 2920 3.2 (replies are sent when the input
buffer is empty).  Latency owed by the delay knobs is slept just before that
send.  STARTTLS: the 220 is sent, the handshake done, and the plaintext that
followed STARTTLS dropped (fed again only under the T-04 fault).

The faults that are about connections rather than commands live here:
C-02 and C-03 (before the greeting), T-01 (no handshake after 220), TO-01
(silent idle drop) and TO-02 (no 421 at shutdown); C-01 is the greeting
text (``core``), B-01 and D-01 are delivery (``knobs``).  Every other fault
is a quirk of the protocol's server role.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import traceback

import trio

from smtpbench.net.fdio import RECEIVE_SIZE, plain_fd, receive_some, send_all
from smtpbench.protocol.server_state import DATA
from smtpbench.sink.core import SinkCore
from smtpbench.sink.knobs import LMTPSinkConnection, SinkConnection
from smtpbench.sink.poller import Poller


class Session:
    """One connection; :meth:`run` serves it until QUIT, EOF, timeout or cancellation."""

    def __init__(
        self,
        core: SinkCore,
        stream: trio.SocketStream,
        conn_no: int,
        peer_ip: str | None = None,
        poller: Poller | None = None,
    ) -> None:
        """``peer_ip``: the client as a PROXY header announced it (:mod:`smtpbench.sink.proxy`); default the peer's.

        ``poller``: where the session parks while on plain TCP (None: it reads and writes in its own task).
        """
        cfg = core.config
        self.core = core
        #: Where the session parks while on plain TCP (None: it reads and writes in its own task).
        self.poller = poller
        self.cfg = cfg
        self.stats = core.stats
        self.faults = cfg.faults
        self.stream: trio.abc.Stream = stream
        if peer_ip is None:
            try:
                peer_ip = str(stream.socket.getpeername()[0])
            except OSError:
                peer_ip = "0.0.0.0"
        core.stats.count_client(peer_ip)
        self.proto = (LMTPSinkConnection if cfg.lmtp else SinkConnection)(core, peer_ip, conn_no)
        self.idle = cfg.idle_timeout / 10 if self.faults and "TO-01" in self.faults else cfg.idle_timeout

    async def run(self) -> None:
        """Serve the connection; never raises for peer misbehaviour, always closes the stream."""
        stats = self.stats
        proto = self.proto
        stats.connections += 1
        stats.active += 1
        try:
            with trio.CancelScope() as scope:
                scope.deadline = trio.current_time() + self.idle
                await self._serve(scope)
            if scope.cancelled_caught and not proto.closing:
                stats.idle_timeouts += 1
                if not (self.faults and "TO-01" in self.faults):
                    proto.out.append(f"421 4.4.2 {self.cfg.hostname} Error: timeout exceeded\r\n".encode())
                    await self._final_flush()
        except trio.Cancelled:
            if not proto.closing:
                with trio.CancelScope(shield=True):
                    await self._shutdown()
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError, trio.TooSlowError):
            stats.aborted_sessions += 1
        except Exception:
            # A bug must cost one session, not the whole sink; tests assert
            # that internal_errors stays 0 (tests/sinkutil.SinkThread).
            stats.internal_errors += 1
            traceback.print_exc(file=sys.stderr)
        finally:
            stats.active -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _shutdown(self) -> None:
        proto = self.proto
        if self.faults and "TO-02" in self.faults:
            if proto.mode == DATA and proto.receiver is not None and proto.rcpts:
                proto.deliver(proto.receiver.message(), "DATA")
            return
        proto.out.clear()
        proto.out.append(f"421 4.3.2 {self.cfg.hostname} Service shutting down, closing connection\r\n".encode())
        # The peer may already be gone; shutdown goes on regardless.
        with contextlib.suppress(Exception):
            await self._final_flush()

    async def _final_flush(self) -> None:
        out = self.proto.out
        if out:
            data = b"".join(out)
            out.clear()
            with trio.move_on_after(1.0):
                await self.stream.send_all(data)

    async def _serve(self, scope: trio.CancelScope) -> None:
        faults = self.faults
        cfg = self.cfg
        proto = self.proto
        out = proto.out
        if cfg.implicit_tls:
            if not await self._handshake():
                return
            proto.tls = True
        if self.core.delays.get("banner"):
            await trio.sleep(self.core.delays["banner"])
        if faults and "C-03" in faults:
            with trio.move_on_after(0.3):
                while await self.stream.receive_some(RECEIVE_SIZE):
                    pass
        if faults and "C-02" in faults:
            out.append(f"554 5.3.2 {cfg.hostname} No SMTP service here\r\n".encode())
            proto.closing = True
            await self._final_flush()
            return
        out.append(self.core.greeting)
        receive_data = proto.receive_data
        idle = self.idle
        slack = idle / 100
        gate = self.core.gate
        while not proto.closing:
            if gate.paused:  # the pause control: hold every reply (smtpbench.sink.downstream)
                await gate.wait()
            if out:
                if proto.pause:
                    await trio.sleep(proto.pause)
                    proto.pause = 0.0
                pending = b"".join(out)
                out.clear()
                await send_all(self.stream, pending)
            if self.poller is not None and (fd := plain_fd(self.stream)) >= 0:
                # The hot path: the poller reads, executes and answers until something must wait.
                if not await self.poller.serve(fd, proto, scope, idle):
                    return
                while proto.tls_requested:
                    if not await self._start_tls():
                        return
                continue
            data = await receive_some(self.stream)
            if not data:
                return
            # Moving a cancel scope's deadline costs several µs, so it is moved
            # only once it is due within the idle timeout, and then by 1 % more:
            # the timeout fires between idle and idle + 1 % after the last input.
            now = trio.current_time()
            if scope.deadline < now + idle:
                scope.deadline = now + idle + slack
            receive_data(data)
            while proto.tls_requested:
                if not await self._start_tls():
                    return
        if proto.pause:
            await trio.sleep(proto.pause)
            proto.pause = 0.0
        await self._final_flush()

    async def _start_tls(self) -> bool:
        """Send the 220, do the handshake, restart the protocol session; False when the connection ends."""
        proto = self.proto
        if proto.pause:
            await trio.sleep(proto.pause)
            proto.pause = 0.0
        data = b"".join(proto.out)
        proto.out.clear()
        await self.stream.send_all(data)
        if self.faults and "T-01" in self.faults:
            proto.tls_requested = False
            proto.closing = True
            return False
        if not await self._handshake():
            proto.tls_requested = False
            return False
        rest = proto.tls_started()
        if rest:
            proto.receive_data(rest)
        return True

    async def _handshake(self) -> bool:
        ctx = self.cfg.ssl_context
        assert ctx is not None
        tls = trio.SSLStream(self.stream, ctx, server_side=True, https_compatible=False)
        try:
            with trio.fail_after(self.cfg.tls_handshake_timeout):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError):
            self.stats.tls_failures += 1
            self.proto.closing = True
            return False
        self.stats.tls_handshakes += 1
        if tls.session_reused:
            self.stats.tls_resumed += 1
        self.stream = tls
        return True
