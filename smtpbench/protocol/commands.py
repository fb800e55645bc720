"""Command formatting and message-data encoding (RFC 5321 4.1, 4.5.2), sans I/O.

Client side: functions that build exact command bytes, and
:func:`encode_data` which turns any message body into a CRLF-normalised,
dot-stuffed octet string ending in ``CRLF.CRLF``.

Server side (used by :mod:`smtpbench.protocol.server`): :func:`split_path` and
:func:`split_params` read ``<path> params`` (:func:`parse_path`: as a dict),
and :class:`DataReceiver` finds the end of data incrementally and undoes the
dot-stuffing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

CRLF = b"\r\n"
END_OF_DATA = b".\r\n"

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def command(verb: str, arg: str | None = None) -> bytes:
    """Format ``VERB [SP arg] CRLF``; refuses CR or LF inside the argument."""
    if arg is None:
        line = verb
    else:
        if "\r" in arg or "\n" in arg:
            raise ValueError("command argument must not contain CR or LF")
        line = f"{verb} {arg}"
    return line.encode("utf-8") + CRLF


def ehlo(domain: str) -> bytes:
    """``EHLO domain``."""
    return command("EHLO", domain)


def lhlo(domain: str) -> bytes:
    """``LHLO domain`` (LMTP's EHLO, RFC 2033 4.1)."""
    return command("LHLO", domain)


def helo(domain: str) -> bytes:
    """``HELO domain``."""
    return command("HELO", domain)


def _params(params: Mapping[str, str | None] | None) -> str:
    if not params:
        return ""
    return "".join(f" {k}" if v is None else f" {k}={v}" for k, v in params.items())


def mail_from(reverse_path: str, params: Mapping[str, str | None] | None = None) -> bytes:
    """``MAIL FROM:<reverse_path> [params]`` (no space around the colon, 3.3)."""
    return command("MAIL", f"FROM:<{reverse_path}>{_params(params)}")


def rcpt_to(forward_path: str, params: Mapping[str, str | None] | None = None) -> bytes:
    """``RCPT TO:<forward_path> [params]``."""
    return command("RCPT", f"TO:<{forward_path}>{_params(params)}")


DATA = b"DATA\r\n"
RSET = b"RSET\r\n"
NOOP = b"NOOP\r\n"
QUIT = b"QUIT\r\n"
STARTTLS = b"STARTTLS\r\n"
#: An empty message: what ends a DATA that got 354 with nothing to send (RFC 2920 3.1).
DATA_END_EMPTY = b".\r\n"


def normalize_lines(body: bytes) -> bytes:
    """``body`` with every line ending in CRLF (bare CR and LF normalised, 2.3.8), a final CRLF added if missing."""
    text = _LINE_ENDS.sub(CRLF, body)
    if text and not text.endswith(CRLF):
        text += CRLF
    return text


def encode_data(body: bytes) -> bytes:
    """Return ``body`` ready to send after a 354, terminator included.

    Guarantees: every line ends in CRLF (bare CR and LF are normalised, as
    2.3.8 forbids sending them); every line starting with ``.`` gets one more
    ``.`` (4.5.2); the result ends with exactly ``CRLF.CRLF``.
    """
    text = normalize_lines(body)
    if text.startswith(b"."):
        text = b"." + text
    text = text.replace(b"\r\n.", b"\r\n..")
    return text + END_OF_DATA


def bdat_chunks(message: bytes, chunk_size: int) -> list[bytes]:
    """``message`` (already CRLF-normalised) as RFC 3030 BDAT commands, each with its chunk.

    Guarantees: each element is ``BDAT <n>[ LAST]CRLF`` followed by exactly
    ``n`` octets of the message (no dot-stuffing: BDAT counts octets), chunks
    of at most ``chunk_size`` octets in order, ``LAST`` on the final one only;
    an empty message is one ``BDAT 0 LAST``.
    """
    size = max(chunk_size, 1)
    out = []
    for start in range(0, len(message), size):
        chunk = message[start : start + size]
        last = b" LAST" if start + size >= len(message) else b""
        out.append(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    return out or [b"BDAT 0 LAST\r\n"]


# --- server side -----------------------------------------------------------


def split_path(arg: str, keyword: str) -> tuple[str, str] | None:
    """Split ``FROM:<path> params`` into ``(path, params text)``; ``None`` when not of that form.

    ``keyword`` is ``FROM`` or ``TO``.  Spaces after the colon are tolerated,
    as most servers do; the parameter text is kept raw so that a server can
    judge order and duplicates.
    """
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        return None
    rest = rest.lstrip(" ")
    if not rest.startswith("<"):
        return None
    end = rest.find(">")
    if end < 0 or "<" in rest[1:end]:
        return None
    tail = rest[end + 1 :]
    if tail and not tail.startswith(" "):
        return None
    return rest[1:end], tail


def split_params(tail: str) -> list[tuple[str, str | None]]:
    """MAIL/RCPT parameters in order, names upper-cased, duplicates kept."""
    out: list[tuple[str, str | None]] = []
    for word in tail.split():
        k, eq, v = word.partition("=")
        out.append((k.upper(), v if eq else None))
    return out


def parse_path(arg: str, keyword: str) -> tuple[str, dict[str, str | None]] | None:
    """:func:`split_path` with the parameters as a dict (a repeated name keeps its last value)."""
    parsed = split_path(arg, keyword)
    if parsed is None:
        return None
    return parsed[0], dict(split_params(parsed[1]))


class DataReceiver:
    """Incremental end-of-data finder for the server side of DATA.

    :meth:`feed` returns ``None`` while the message is incomplete, or the
    bytes received *after* ``CRLF.CRLF`` once it is complete (often empty,
    or the next pipelined commands).  Only ``CRLF.CRLF`` ends the data
    (4.1.1.4): bare-LF variants stay part of the message, which is what
    makes the sink immune to SMTP smuggling.  ``size`` counts message octets
    and ``lines`` holds the unstuffed content when ``keep`` is set.
    """

    __slots__ = ("_tail", "_skip", "size", "keep", "content", "max_size", "overflow")

    def __init__(self, keep: bool = False, max_size: int = 0) -> None:
        # Seeded with the DATA line's own CRLF so that a message whose first
        # line is "." (an empty message) is recognised; the seed is not content.
        self._tail = b"\r\n"
        self._skip = 2
        self.size = 0
        self.keep = keep
        self.content = bytearray()
        self.max_size = max_size
        self.overflow = False

    def feed(self, data: bytes) -> bytes | None:
        """Consume ``data``; return the leftover after the end, or ``None``."""
        window = self._tail + data
        idx = window.find(b"\r\n.\r\n")
        if idx < 0:
            # Keep 4 bytes back: they may be the start of a split terminator.
            upto = max(len(window) - 4, 0)
            self._account(window, upto)
            self._tail = window[upto:]
            return None
        self._account(window, idx + 2)
        self._tail = b""
        return window[idx + 5 :]

    def _account(self, window: bytes, upto: int) -> None:
        skip = self._skip
        if upto <= skip:
            self._skip = skip - upto
            return
        self._skip = 0
        # Counted without slicing: the octets are copied only when kept.
        self.size += upto - skip
        if self.max_size and self.size > self.max_size:
            self.overflow = True
        if self.keep and not self.overflow:
            self.content += window[skip:upto]

    def message(self) -> bytes:
        """The received content with dot-stuffing undone (needs ``keep``)."""
        text = bytes(self.content)
        if text.startswith(b".."):
            text = text[1:]
        return text.replace(b"\r\n..", b"\r\n.")
