"""Fast stream I/O: straight on a plain TCP socket's file descriptor while it does not block.

A Trio ``send_all``/``receive_some`` costs a trip through the scheduler even
when the socket is ready; skipping it roughly halves the CPU per message of
both the load client and the sink.  Only a write that would block, or a read
with nothing to read, goes through Trio (which waits).  A read that found
data at once still passes a Trio checkpoint, so cancellation and fairness
between tasks are as with Trio's own calls.  Errors are translated as Trio's
``SocketStream`` does (``BrokenResourceError`` from the ``OSError``), so
callers see the same exceptions.  TLS and other streams take Trio's path.
"""

from __future__ import annotations

import errno
import os
from typing import NoReturn

import trio

RECEIVE_SIZE = 65536
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def raise_stream_error(exc: OSError) -> NoReturn:
    """Raise what ``trio.SocketStream`` would for ``exc`` (so classify() sees the same chain)."""
    if exc.errno in _CLOSED_ERRNOS:
        raise trio.ClosedResourceError("this socket was already closed") from None
    raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


def plain_fd(stream: trio.abc.Stream) -> int:
    """The fd to use directly for ``stream``, or -1 (TLS, closed, half-closed, other streams)."""
    if type(stream) is not trio.SocketStream:
        return -1
    sock = stream.socket
    return -1 if sock.did_shutdown_SHUT_WR else sock.fileno()


async def read_fd(fd: int, yield_first: bool = False) -> bytes:
    """Read what is there on a non-blocking socket fd, waiting (through Trio) when nothing is.

    Always passes a Trio checkpoint, as ``receive_some`` does; b"" at EOF.
    ``yield_first`` passes the checkpoint before the first read instead of
    after it: for a reply just asked for, the other tasks' turn gives the
    peer the time to answer, so the read usually finds it, rather than
    failing and waiting for readiness (a system call and a trip through
    Trio's I/O wait more).
    """
    if yield_first:
        await trio.lowlevel.checkpoint()
    try:
        data = os.read(fd, RECEIVE_SIZE)
    except BlockingIOError:
        pass
    except OSError as exc:
        raise_stream_error(exc)
    else:
        if not yield_first:
            await trio.lowlevel.checkpoint()
        return data
    while True:
        try:
            await trio.lowlevel.wait_readable(fd)
        except OSError as exc:
            raise_stream_error(exc)
        try:
            return os.read(fd, RECEIVE_SIZE)
        except BlockingIOError:
            continue  # a spurious wake-up: wait again
        except OSError as exc:
            raise_stream_error(exc)


async def receive_some(stream: trio.abc.Stream, yield_first: bool = False) -> bytes:
    """The next bytes from ``stream`` (b"" at EOF), as ``bytes``; always a Trio checkpoint.

    ``yield_first``: as :func:`read_fd`'s, on a plain socket.
    """
    fd = plain_fd(stream)
    if fd < 0:
        data = await stream.receive_some(RECEIVE_SIZE)
        return data if type(data) is bytes else bytes(data)
    return await read_fd(fd, yield_first)


async def send_all(stream: trio.abc.Stream, data: bytes) -> None:
    """Write ``data`` completely, as ``stream.send_all``; returns once the kernel has every byte.

    When the whole write succeeds at once there is no checkpoint: callers
    alternate sends with reads, which always checkpoint.
    """
    fd = plain_fd(stream)
    if fd >= 0 and data:
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise_stream_error(exc)
        if sent == len(data):
            return
        data = data[sent:]
    await stream.send_all(data)
