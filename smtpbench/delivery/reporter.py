"""The delivery sink's side of the report protocol (:mod:`.wire`): never blocks the sink.

:meth:`Reporter.report` is synchronous and O(1): it appends one encoded
record to a bounded buffer, or, when the buffer is full (the run is not
reading, or unreachable), drops it and counts the drop.  A background task
(:meth:`Reporter.run`) connects to the run, retrying every
:data:`RETRY_S` while it cannot, and writes the buffer in batches.  A batch
leaves the buffer only once it was written; after a broken connection it is
sent again, and the run discards the sequence numbers it already has.
"""

from __future__ import annotations

import secrets
from collections import deque

import trio

from smtpbench.delivery import wire

DEFAULT_CAPACITY = 1_000_000
BATCH = 2000
RETRY_S = 0.2
CONNECT_TIMEOUT_S = 5.0


class Reporter:
    """Reports arrivals to ``host:port``; see the module notes."""

    def __init__(self, host: str, port: int, capacity: int = DEFAULT_CAPACITY) -> None:
        self.host = host
        self.port = port
        self.capacity = capacity
        self.token = secrets.token_hex(8)
        self._buf: deque[bytes] = deque()
        self._wake = trio.Event()
        self._seq = 0
        #: Reports dropped because the buffer was full.
        self.dropped = 0
        #: Reports written to the run.
        self.sent = 0
        #: Connections made to the run (1 unless it broke).
        self.connections = 0

    def report(self, ident: str | None, copies: int, epoch: float) -> None:
        """Queue one arrival; never blocks, never raises."""
        if len(self._buf) >= self.capacity:
            self.dropped += 1
        else:
            self._seq += 1
            self._buf.append(wire.arrival(self._seq, epoch, copies, ident))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Reports not written yet."""
        return len(self._buf)

    async def run(self) -> None:
        """Connect and write reports until cancelled (reconnecting as needed)."""
        while True:
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await trio.open_tcp_stream(self.host, self.port)
            except (OSError, trio.TooSlowError):
                await trio.sleep(RETRY_S)
                continue
            self.connections += 1
            try:
                async with stream:
                    await stream.send_all(wire.hello(self.token))
                    await self._pump(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await trio.sleep(RETRY_S)

    async def _pump(self, stream: trio.SocketStream) -> None:
        told = 0
        while True:
            if not self._buf and told == self.dropped:
                self._wake = trio.Event()
                await self._wake.wait()
            n = min(len(self._buf), BATCH)
            batch = [self._buf[i] for i in range(n)]
            if self.dropped != told:
                batch.append(wire.dropped(self.dropped))
            await stream.send_all(b"".join(batch))
            told = self.dropped
            for _ in range(n):  # written: now they may leave the buffer
                self._buf.popleft()
            self.sent += n

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the buffer is written, e.g. before the sink exits."""
        with trio.move_on_after(timeout):
            while self._buf:
                await trio.sleep(0.01)
