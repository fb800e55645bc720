"""SMTP reply parsing (RFC 5321 4.2), sans I/O.

Theory of operation
-------------------
:class:`ReplyParser` is fed raw bytes as they arrive and hands back complete
:class:`Reply` objects.  It never does I/O and never blocks, so the load
engine, the conformance suite and the tests drive it the same way.

A reply is one or more lines ``CODE-text`` ... ``CODE text``.  The parser is
strict where it must be (a line that is not ``3 digits`` + separator is a
:class:`MalformedReplyError`; a multi-line reply whose lines disagree on the
code is a :class:`MismatchedReplyCodeError`) and lenient where RFC 5321 asks
clients to be (a last line without the SP, a bare LF line end, codes whose
second digit is unusual).  Lenient cases are not silent: each is recorded in
``Reply.defects`` so the conformance suite can grade reply hygiene (G-01)
from the very replies the load engine used.

Memory is bounded: a line longer than ``max_line`` or a reply longer than
``max_reply`` raises :class:`ReplyTooLongError` as soon as the cap is crossed,
without buffering the rest.
"""

from __future__ import annotations

import re

from smtpbench.protocol.errors import (
    MalformedReplyError,
    MismatchedReplyCodeError,
    ReplyTooLongError,
)

#: RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
RFC_MAX_REPLY_LINE = 512
#: Our hard cap on one line.  Generous (real servers overshoot 512 in EHLO
#: and error texts) but small enough that a hostile server cannot hurt us.
DEFAULT_MAX_LINE = 4096
#: Hard cap on a whole multi-line reply.
DEFAULT_MAX_REPLY = 64 * 1024

_ENHANCED = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
_TEXT_OK = re.compile(rb"[\t\x20-\x7e]*")
_DIGITS = frozenset(b"0123456789")
#: A complete, clean, single-line reply: ``[2-5][0-5]d SP text CRLF``, text of printable
#: ASCII or TAB, at most 508 octets before the CRLF.  Exactly the lines for which the
#: general path finds no defect and no error, so it may skip straight to the Reply.
_CLEAN_LINE = re.compile(rb"([2-5][0-5][0-9]) ([\t\x20-\x7e]{0,504})\r\n")
#: The longest line _CLEAN_LINE matches, CRLF included.
_CLEAN_LINE_MAX = 510
#: How many distinct clean lines a parser remembers with their Reply (a server repeats the
#: same few replies, message after message).  Bounded: a server that varies its replies only
#: fills it once, and then the lines it did not hold are parsed as before.
_SEEN_MAX = 64
#: How many distinct multi-line replies (an EHLO reply, above all) a cache holds.
_WHOLE_MAX = 8


class ReplyCache:
    """Replies already parsed, by their exact bytes: shareable by every parser of a run (one thread).

    ``lines`` holds clean single-line replies by their line; ``whole`` holds defect-free multi-line
    replies (raw bytes, Reply) found again by a prefix match.  A Reply is never changed once made,
    so the same bytes may yield the same object.  Both are bounded (:data:`_SEEN_MAX`,
    :data:`_WHOLE_MAX`): a server that varies its replies fills them once, then parsing goes on as
    without them.  Shared across connections, a server's banner and EHLO reply are parsed once
    per run instead of once per session.
    """

    __slots__ = ("lines", "whole")

    def __init__(self) -> None:
        self.lines: dict[bytes, Reply] = {}
        self.whole: list[tuple[bytes, Reply]] = []


class Reply:
    """One complete SMTP reply.

    ``code`` is the three-digit code, ``lines`` the text of each line (code
    and separator removed, decoded leniently), ``raw`` the exact bytes
    received, and ``defects`` the hygiene problems seen (empty when clean).
    """

    __slots__ = ("code", "lines", "raw", "defects")

    def __init__(self, code: int, lines: tuple[str, ...], raw: bytes, defects: tuple[str, ...] = ()) -> None:
        self.code = code
        self.lines = lines
        self.raw = raw
        self.defects = defects

    @property
    def text(self) -> str:
        """All lines' text joined with newlines."""
        return "\n".join(self.lines)

    @property
    def first_digit(self) -> int:
        """The reply class: 2 done, 3 intermediate, 4 transient, 5 permanent."""
        return self.code // 100

    @property
    def is_positive(self) -> bool:
        """True for 2yz and 3yz replies."""
        return self.code < 400

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the text, if any."""
        return enhanced_code(self.lines[0]) if self.lines else None

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def enhanced_code(text: str) -> str | None:
    """Return ``"c.s.d"`` when ``text`` starts with an enhanced status code."""
    m = _ENHANCED.match(text.encode("utf-8", "replace"))
    return m.group(0).decode().strip() if m else None


def line_defects(line: bytes, terminator: bytes) -> list[str]:
    """Hygiene problems of one reply line (without changing how it parses).

    ``line`` is the line without its terminator, ``terminator`` what ended it.
    """
    defects = []
    if terminator != b"\r\n":
        defects.append("bare LF line end")
    if len(line) + 2 > RFC_MAX_REPLY_LINE:
        defects.append(f"line of {len(line) + 2} octets exceeds 512")
    if not _TEXT_OK.fullmatch(line, 4):
        defects.append("text has control or non-ASCII octets")
    return defects


class ReplyParser:
    """Incremental reply parser: :meth:`feed` bytes, get complete replies.

    Guarantees: replies come out in the order received; a protocol violation
    raises a :class:`~smtpbench.protocol.errors.SMTPProtocolError` subclass
    and leaves the parser unusable (the connection must be dropped); at most
    ``max_line`` + ``max_reply`` bytes are ever buffered.
    """

    __slots__ = ("_buf", "_code", "_texts", "_raw", "_defects", "cache", "max_line", "max_reply")

    def __init__(
        self, max_line: int = DEFAULT_MAX_LINE, max_reply: int = DEFAULT_MAX_REPLY, cache: ReplyCache | None = None
    ) -> None:
        self.max_line = max_line
        self.max_reply = max_reply
        self._buf = bytearray()
        #: Replies already parsed (this parser's own unless one is shared): the same bytes at the
        #: start of a reply are that same Reply again.
        self.cache = cache if cache is not None else ReplyCache()
        self._reset_reply()

    def _reset_reply(self) -> None:
        self._code = -1
        self._texts: list[str] = []
        self._raw = bytearray()
        self._defects: list[str] = []

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a returned reply."""
        return len(self._buf) + len(self._raw)

    @property
    def has_partial(self) -> bool:
        """True when bytes of an unfinished reply are held."""
        return bool(self._buf) or bool(self._raw)

    def feed(self, data: bytes) -> list[Reply]:
        """Add received bytes; return every reply they complete (maybe none)."""
        buf = self._buf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        out: list[Reply] = []
        start = 0
        end = len(data)
        find = data.find
        # The fast path needs the caps not to bite on a clean line (the defaults never do).
        clean = _CLEAN_LINE.match if self.max_line >= _CLEAN_LINE_MAX and self.max_reply >= _CLEAN_LINE_MAX else None
        seen = self.cache.lines
        whole = self.cache.whole
        while start < end:
            nl = find(b"\n", start)
            if clean is not None and self._code == -1:
                if nl >= 0:
                    reply = seen.get(data[start : nl + 1])
                    if reply is None and whole:
                        reply = self._whole_at(data, start)
                    if reply is not None:
                        out.append(reply)
                        start += len(reply.raw)
                        continue
                m = clean(data, start)
                if m is not None:
                    reply = Reply(int(m[1]), (m[2].decode("ascii"),), m[0])
                    if len(seen) < _SEEN_MAX:
                        seen[m[0]] = reply
                    out.append(reply)
                    start = m.end()
                    continue
            if nl < 0:
                break
            if nl > 0 and data[nl - 1] == 13:
                line = data[start : nl - 1]
                term = b"\r\n"
            else:
                line = data[start:nl]
                term = b"\n"
            raw_line = data[start : nl + 1]
            start = nl + 1
            if len(raw_line) > self.max_line:
                raise ReplyTooLongError(f"reply line of {len(raw_line)} octets exceeds cap {self.max_line}")
            reply = self._line(line, term, raw_line)
            if reply is not None:
                out.append(reply)
        if start < end:
            buf += data[start:]
        if len(buf) > self.max_line:
            raise ReplyTooLongError(f"reply line exceeds cap {self.max_line} without a line end")
        return out

    def _line(self, line: bytes, term: bytes, raw_line: bytes) -> Reply | None:
        n = len(line)
        if n < 3 or line[0] not in _DIGITS or line[1] not in _DIGITS or line[2] not in _DIGITS:
            raise MalformedReplyError(f"not an SMTP reply line: {line[:80]!r}")
        if not 0x32 <= line[0] <= 0x35:
            raise MalformedReplyError(f"reply code must start with 2-5: {line[:80]!r}")
        code = (line[0] - 48) * 100 + (line[1] - 48) * 10 + (line[2] - 48)
        if n == 3:
            sep = 32
            self._defects.append("last line lacks the SP after the code")
        else:
            sep = line[3]
            if sep != 32 and sep != 45:  # ' ' or '-'
                raise MalformedReplyError(f"bad separator after reply code: {line[:80]!r}")
        if self._code == -1:
            self._code = code
        elif code != self._code:
            raise MismatchedReplyCodeError(f"multi-line reply changes code from {self._code} to {code}")
        # Fast path for clean lines; the full hygiene check only on suspicion.
        if term != b"\r\n" or n > 508 or _TEXT_OK.fullmatch(line, 4) is None:
            self._defects.extend(line_defects(line, term))
        if line[1] > 0x35:
            self._defects.append("second digit of code outside 0-5")
        self._texts.append(line[4:].decode("utf-8", "replace"))
        self._raw += raw_line
        if len(self._raw) > self.max_reply:
            raise ReplyTooLongError(f"reply exceeds cap of {self.max_reply} octets")
        if sep == 45:
            return None
        reply = Reply(code, tuple(self._texts), bytes(self._raw), tuple(self._defects))
        self._reset_reply()
        if len(reply.lines) > 1 and not reply.defects:
            self._remember_whole(reply)
        return reply

    def _whole_at(self, data: bytes, start: int) -> Reply | None:
        """A cached multi-line reply that ``data`` holds whole at ``start`` (within this parser's caps)."""
        for raw, reply in self.cache.whole:
            if data.startswith(raw, start) and len(raw) <= self.max_reply:
                return reply
        return None

    def _remember_whole(self, reply: Reply) -> None:
        whole = self.cache.whole
        # Only replies every fast-path parser would accept line by line (each line within _CLEAN_LINE_MAX).
        fits = len(whole) < _WHOLE_MAX and all(len(x) < _CLEAN_LINE_MAX for x in reply.raw.split(b"\n"))
        if fits and all(raw != reply.raw for raw, _ in whole):
            whole.append((reply.raw, reply))
