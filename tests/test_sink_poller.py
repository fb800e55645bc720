"""The sink's shared poller (smtpbench.sink.poller): hand-offs, idle time, resets, full send buffers."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import trio

from smtpbench.protocol.server_state import R_HELP
from smtpbench.sink.downstream import PauseGate
from smtpbench.sink.poller import Poller, epoll_available
from tests.sinkutil import RawClient, SinkThread

pytestmark = pytest.mark.skipif(not epoll_available(), reason="the poller needs epoll (Linux)")


class BigReplies:
    """A protocol stand-in whose every input is answered by ``size`` octets."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.out: list[bytes] = []
        self.closing = False
        self.tls_requested = False
        self.pause = 0.0

    def receive_data(self, buf: bytes) -> None:
        self.out.append(b"x" * self.size)


def test_write_the_socket_does_not_take_whole_is_handed_back() -> None:
    """A reply larger than the socket buffers: the poller writes what fits and hands back the rest, in order."""

    async def main() -> tuple[bool, int, bytes]:
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        proto = BigReplies(4 * 1024 * 1024)
        poller = Poller(PauseGate())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poller.run)
                peer.send(b"go")
                with trio.fail_after(10), trio.CancelScope() as scope:
                    alive = await poller.serve(ours.fileno(), proto, scope, 30.0)
                peer.setblocking(False)
                got = b""
                while True:
                    try:
                        got += peer.recv(1 << 20)
                    except BlockingIOError:
                        break
                nursery.cancel_scope.cancel()
        finally:
            poller.close()
            ours.close()
            peer.close()
        return alive, len(got), b"".join(proto.out)

    alive, written, rest = trio.run(main)
    assert alive
    assert 0 < written < 4 * 1024 * 1024 and written + len(rest) == 4 * 1024 * 1024
    assert set(rest) == {ord("x")}


def test_replies_beyond_the_send_buffer_all_arrive_in_order() -> None:
    """50,000 pipelined HELPs (4.5 MB of replies) to a client that reads late: every reply, in order."""
    count = 50_000
    with SinkThread(idle_timeout=30.0) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            greeting += sock.recv(512)
        sender = threading.Thread(target=sock.sendall, args=(b"HELP\r\n" * count,), daemon=True)
        sender.start()
        time.sleep(0.5)  # let the sink fill the socket buffers before anything is read
        want = R_HELP * count
        got = bytearray()
        while len(got) < len(want):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        sender.join(30)
        sock.close()
        assert bytes(got) == want
        assert server.stats.commands >= count and server.stats.aborted_sessions == 0


def test_idle_timeout_counts_from_the_last_input_while_parked() -> None:
    """Input every 0.2 s keeps a 1 s idle timeout away; silence then ends the session with 421."""
    with SinkThread(idle_timeout=1.0) as server, RawClient(server.port, timeout=5) as c:
        c.ehlo()
        start = time.monotonic()
        while time.monotonic() - start < 2.5:  # 2.5 idle timeouts of activity
            time.sleep(0.2)
            assert c.cmd("NOOP").code == 250
        silent = time.monotonic()
        r = c.replies(1, timeout=5)
        assert r and r[0].code == 421
        assert time.monotonic() - silent >= 0.95
        assert c.wait_closed()
        assert server.stats.idle_timeouts == 1


def test_reset_while_parked_is_an_aborted_session() -> None:
    """A client that resets its connection mid-transaction: counted as aborted, nothing delivered."""
    with SinkThread(store_messages=True) as server:
        c = RawClient(server.port)
        c.ehlo()
        c.codes(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n", 3)
        c.send(b"Subject: cut\r\n\r\nhalf")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        deadline = time.monotonic() + 10
        while server.stats.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats.active == 0
        assert server.stats.aborted_sessions == 1 and server.messages == []


def test_many_sessions_interleaved_each_get_their_own_replies() -> None:
    """Twenty sessions, each in a different state at once, through the one poller: no reply crosses over."""
    with SinkThread(store_messages=True) as server:
        clients = [RawClient(server.port) for _ in range(20)]
        try:
            for i, c in enumerate(clients):
                assert c.cmd(f"EHLO c{i}.example").code == 250
            for i, c in enumerate(clients):
                assert c.cmd(f"MAIL FROM:<s{i}@x.example>").code == 250
            for i, c in enumerate(clients):
                assert c.cmd(f"RCPT TO:<r{i}@example.test>").code == 250
            for c in clients:
                assert c.cmd("DATA").code == 354
            for i, c in enumerate(clients):
                c.send(f"Subject: {i}\r\n\r\nbody {i}\r\n.\r\n".encode())
            for c in clients:
                assert c.replies(1)[0].code == 250
            for c in clients:
                assert c.cmd("QUIT").code == 221
        finally:
            for c in clients:
                c.close()
        by_sender = {m.mail_from: m for m in server.messages}
        assert len(by_sender) == 20
        for i in range(20):
            m = by_sender[f"s{i}@x.example"]
            assert m.rcpt_to == [f"r{i}@example.test"] and m.content.endswith(f"body {i}\r\n".encode())
