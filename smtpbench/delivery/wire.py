"""The arrival report protocol: a delivery sink tells the run what arrived.

Newline-delimited ASCII records over one TCP connection from the sink to the
run (so the sink may run on another machine: the next hop's)::

    SMTPBENCH-DELIVERY 1 <sink-token>             first line: version and the sink's random token
    A <seq> <epoch> <copies> <id>                 an arrival: sequence number (1, 2, ... per sink),
                                                  arrival time (Unix seconds, µs), recipients
                                                  delivered in that transaction, X-Smtpbench-Id
                                                  value ("-" when the message had none)
    D <total>                                     reports the sink has had to drop so far

TCP keeps records in order; a sink that reconnects resends what it was
sending, and the run ignores sequence numbers it already has, so an arrival
counts once however often the connection breaks.  Arrival times are the
sink's clock: across machines, keep the clocks in sync (NTP).
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = "SMTPBENCH-DELIVERY"
VERSION = 1
#: The longest record a reader accepts (an id is at most ~60 characters).
MAX_LINE = 512


def hello(token: str) -> bytes:
    """The first line a sink sends."""
    return f"{MAGIC} {VERSION} {token}\n".encode("ascii")


def arrival(seq: int, epoch: float, copies: int, ident: str | None) -> bytes:
    """One arrival record (``ident`` must be printable ASCII without spaces, or None)."""
    return f"A {seq} {epoch:.6f} {copies} {ident or '-'}\n".encode("ascii")


def dropped(total: int) -> bytes:
    """The count of reports the sink had to drop (its buffer was full)."""
    return f"D {total}\n".encode("ascii")


@dataclass(frozen=True)
class Hello:
    """A sink introduced itself."""

    token: str


@dataclass(frozen=True)
class Arrival:
    """One arrival record."""

    seq: int
    epoch: float
    copies: int
    ident: str | None


@dataclass(frozen=True)
class Dropped:
    """The sink's drop count so far."""

    total: int


Record = Hello | Arrival | Dropped


class ProtocolError(ValueError):
    """A line that is not a record of this protocol (the reader then closes the connection)."""


def parse(line: bytes) -> Record:
    """One line (without its newline) as a record; raises :class:`ProtocolError` for anything else."""
    try:
        parts = line.decode("ascii").split(" ")
        if parts[0] == "A" and len(parts) == 5:
            ident = None if parts[4] == "-" else parts[4]
            return Arrival(int(parts[1]), float(parts[2]), int(parts[3]), ident)
        if parts[0] == "D" and len(parts) == 2:
            return Dropped(int(parts[1]))
        if parts[0] == MAGIC and len(parts) == 3:
            if parts[1] != str(VERSION):
                raise ProtocolError(f"protocol version {parts[1]} (this run speaks {VERSION})")
            return Hello(parts[2])
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"bad record {line[:80]!r}") from None
    raise ProtocolError(f"bad record {line[:80]!r}")


class LineReader:
    """Splits a byte stream into lines; a line longer than :data:`MAX_LINE` is a :class:`ProtocolError`."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines in ``data`` (plus what was left over before)."""
        buf = self._rest + data
        lines = buf.split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > MAX_LINE:
            raise ProtocolError("line too long")
        return lines
