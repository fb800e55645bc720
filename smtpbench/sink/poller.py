"""One epoll set and one Trio task for all of a sink's plain-TCP sessions: the sink's hot path.

Theory of operation
-------------------
A session on a plain TCP socket *parks* here (:meth:`Poller.serve`): its
file descriptor joins a level-triggered epoll set and its task sleeps.  The
poller task waits (through Trio) until that set is readable, then, for each
ready socket and without any task switch, reads what arrived, hands it to
the protocol (``receive_data``) and writes the replies it produced, all
straight on the file descriptors.  Per client round trip that is one
``read`` and one ``write`` system call and a share of one ``epoll_wait``,
where a task per session costs a failed ``read``, an ``epoll_ctl`` and two
trips through Trio's scheduler (about half the sink's CPU per message).

Whatever needs to wait goes back to the session's task (the poller *hands
off*, and the task carries on with its own loop, see
:mod:`smtpbench.sink.session`): a reply owed latency (``pause``), STARTTLS,
the end of the session (``closing``, EOF, an error), and a write the socket
would not take whole.  The session's idle timeout keeps working while it is
parked (:meth:`Poller.serve` watches the time of its last input), and the
sink's pause control holds the poller as it holds a session's loop.

Replies still go out once per receive, after every complete command in it
was executed (RFC 2920 3.2), exactly as on the task path.
"""

from __future__ import annotations

import math
import os
import select
from typing import Protocol

import trio

from smtpbench.net.fdio import RECEIVE_SIZE, raise_stream_error
from smtpbench.sink.downstream import PauseGate

#: Ready sockets served per epoll_wait.
BATCH = 256
#: Batches served back to back before the poller passes a Trio checkpoint (fairness to other tasks).
ROUNDS = 8


class Parkable(Protocol):
    """What the poller needs of a session's protocol (a ``ServerConnection``)."""

    out: list[bytes]
    closing: bool
    tls_requested: bool
    pause: float

    def receive_data(self, buf: bytes) -> None:
        """Process received octets; replies go to ``out``."""


class _Park:
    """One parked session: its socket, protocol, wake-up and why it was handed back."""

    __slots__ = ("fd", "proto", "event", "last", "done", "eof", "error")

    def __init__(self, fd: int, proto: Parkable, now: float) -> None:
        self.fd = fd
        self.proto = proto
        self.event = trio.Event()
        #: Trio time of the last input (the idle timeout counts from it).
        self.last = now
        self.done = False
        self.eof = False
        self.error: BaseException | None = None


def epoll_available() -> bool:
    """Whether this platform has epoll (Linux); elsewhere sessions keep to their own tasks."""
    return hasattr(select, "epoll")


class Poller:
    """The shared epoll set; :meth:`run` is its task, :meth:`serve` parks one session."""

    def __init__(self, gate: PauseGate) -> None:
        self.gate = gate
        self._epoll = select.epoll()
        self._parked: dict[int, _Park] = {}

    def close(self) -> None:
        """Release the epoll set (once every session has left it)."""
        self._epoll.close()

    async def run(self) -> None:
        """Serve the parked sessions until cancelled."""
        poll = self._epoll.poll
        epfd = self._epoll.fileno()
        gate = self.gate
        serve_ready = self._serve_ready
        current_time = trio.current_time
        wait_readable = trio.lowlevel.wait_readable
        while True:
            # Waiting here is also the checkpoint between rounds: when sockets are ready
            # already, Trio's own epoll_wait returns at once.
            await wait_readable(epfd)
            if gate.paused:  # the pause control: read nothing, answer nothing
                await gate.wait()
                continue
            # While sockets keep turning ready, serve them without a trip through Trio's
            # scheduler each time (its cost per trip is what the poller saves), but pass a
            # checkpoint after ROUNDS batches so that every other task gets its turn.
            for _ in range(ROUNDS):
                events = poll(0, BATCH)
                if not events:
                    break
                serve_ready(events, current_time())

    def _serve_ready(self, events: list[tuple[int, int]], now: float) -> None:
        """Read, execute and answer on each ready socket; hand back what must wait."""
        parked = self._parked
        read = os.read
        write = os.write
        hand_off = self._hand_off
        for fd, _ in events:
            park = parked.get(fd)
            if park is None:
                continue
            try:
                data = read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                hand_off(park, exc)
                continue
            if not data:
                park.eof = True
                hand_off(park, None)
                continue
            park.last = now
            proto = park.proto
            try:
                proto.receive_data(data)
            except Exception as exc:  # a bug costs this session only: its task reports it
                hand_off(park, exc)
                continue
            if proto.closing or proto.tls_requested or proto.pause:
                hand_off(park, None)  # the task sends what is pending, then closes/handshakes/sleeps
                continue
            out = proto.out
            if not out:
                continue
            pending = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            try:
                sent = write(fd, pending)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                hand_off(park, exc)
                continue
            if sent < len(pending):
                out.append(pending[sent:])  # the task waits until the socket takes the rest
                hand_off(park, None)

    def _hand_off(self, park: _Park, error: BaseException | None) -> None:
        self._epoll.unregister(park.fd)
        del self._parked[park.fd]
        park.done = True
        park.error = error
        park.event.set()

    async def serve(self, fd: int, proto: Parkable, scope: trio.CancelScope, idle: float) -> bool:
        """Park a session on socket ``fd`` until the poller hands it back; False at EOF.

        ``proto.out`` must be empty (sent) on entry; on return it holds what
        the task must still send.  ``scope`` is the session's idle-timeout
        scope: it is cancelled (deadline now) when no input came for ``idle``
        seconds, and otherwise left due ``idle`` seconds after the last input.
        A socket error is raised as Trio's ``SocketStream`` would raise it; a
        bug in the protocol is re-raised here, in the session's task.
        """
        park = _Park(fd, proto, trio.current_time())
        self._epoll.register(fd, select.EPOLLIN)
        self._parked[fd] = park
        scope.deadline = math.inf  # the loop below keeps the time while parked
        try:
            while not park.done:
                with trio.move_on_at(park.last + idle):
                    await park.event.wait()
                if not park.done and trio.current_time() >= park.last + idle:
                    scope.cancel()  # the idle timeout: the session's scope ends at the next checkpoint
                    await trio.lowlevel.checkpoint()
        finally:
            if not park.done:
                self._epoll.unregister(fd)
                del self._parked[fd]
            scope.deadline = park.last + idle
        error = park.error
        if error is not None:
            if isinstance(error, OSError):
                raise_stream_error(error)
            raise error
        return not park.eof
