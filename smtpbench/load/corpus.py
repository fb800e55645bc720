"""Replaying real messages: ``[message] corpus`` (a folder of .eml files, an mbox file or a Maildir).

A corpus may be larger than memory, so it is *indexed*, never loaded: at the
start :func:`index_corpus` records where each message lies (a file, or an
offset and a length in an mbox, in compact arrays: a few bytes a message),
reading an mbox in 1 MiB blocks.  During the run :meth:`CorpusPool.pick`
draws a message with the session's seeded ``random.Random``, reads just that
message (``os.pread`` on the mbox kept open, or the message's own file),
rewrites the header fields the profile names, and renders it for DATA and/or
BDAT.  Memory stays that of one message per session in flight; the reads hit
the page cache once the corpus has been seen, and are small synchronous reads
(a corpus on a slow network filesystem would stall the event loop).

Formats: a *Maildir* is a folder with ``cur``/``new`` (and Maildir++
subfolders ``.Name/cur``); any other folder is searched for ``*.eml`` files
(recursively); a file is an mbox (``From `` lines separate messages; a
``>From `` line is unescaped as mboxrd writes it).  Messages are sampled
uniformly; the envelope comes from the profile.
"""

from __future__ import annotations

import os
import random
import re
import weakref
from array import array
from pathlib import Path

from smtpbench.errors import ConfigError
from smtpbench.load.messages import AddressTemplate, RenderedMessage, rendered

BLOCK = 1 << 20
_FROM_LINE = b"\nFrom "
_MBOXRD_ESCAPE = re.compile(rb"(?m)^>(>*From )")
KEY = "message.corpus"


class CorpusIndex:
    """Where each message of a corpus lies: ``files[file_no[i]]``, and for an mbox ``offset[i]``/``length[i]``."""

    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind  # "mbox", "maildir" or "eml"
        self.files: list[str] = []
        self.file_no = array("I")
        self.offset = array("Q")
        self.length = array("Q")

    def __len__(self) -> int:
        return len(self.file_no)

    def read(self, i: int, fd: int = -1) -> bytes:
        """Message ``i`` as stored (an mbox message without its ``From `` line, unescaped); ``fd``: the open mbox."""
        if self.kind != "mbox":
            with open(self.files[self.file_no[i]], "rb") as f:
                return f.read()
        data = os.pread(fd, self.length[i], self.offset[i])
        data = data[data.find(b"\n") + 1 :]  # the From_ line is the separator, not the message
        if data.endswith(b"\r\n\r\n"):
            data = data[:-2]  # the empty line before the next From_ line belongs to the separator too
        elif data.endswith(b"\n\n"):
            data = data[:-1]
        return _MBOXRD_ESCAPE.sub(rb"\1", data) if b">From " in data else data


def index_corpus(path: str) -> CorpusIndex:
    """Index the corpus at ``path`` (folder of .eml, Maildir or mbox); never holds more than 1 MiB of it.

    Raises ConfigError (key ``message.corpus``) when it cannot be read or holds no message.
    """
    p = Path(path)
    try:
        if p.is_dir():
            maildir = (p / "cur").is_dir() or (p / "new").is_dir()
            index = CorpusIndex(path, "maildir" if maildir else "eml")
            files = _maildir_files(p) if maildir else sorted(str(f) for f in p.rglob("*.eml") if f.is_file())
            index.files = files
            index.file_no.extend(range(len(files)))
        else:
            index = CorpusIndex(path, "mbox")
            index.files = [path]
            _index_mbox(index)
    except OSError as exc:
        raise ConfigError(f"cannot read {path!r}: {exc.strerror or exc}", key=KEY) from None
    if not len(index):
        what = {"maildir": "Maildir", "eml": "folder (no *.eml files)", "mbox": "mbox (no 'From ' line)"}[index.kind]
        raise ConfigError(f"{path!r} is an empty {what}", key=KEY, expected="at least one message")
    return index


def _maildir_files(root: Path) -> list[str]:
    folders = [root, *sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("."))]
    return [
        str(f) for d in folders for sub in ("cur", "new") if (d / sub).is_dir() for f in sorted((d / sub).iterdir())
    ]


def _index_mbox(index: CorpusIndex) -> None:
    starts: list[int] = []
    with open(index.path, "rb") as f:
        head = f.read(len(_FROM_LINE) - 1)
        if head == _FROM_LINE[1:]:
            starts.append(0)
        f.seek(0)
        pos = 0  # file offset of the current block
        carry = b""  # the previous block's last bytes: a separator may straddle two blocks
        while block := f.read(BLOCK):
            buf = carry + block
            base = pos - len(carry)
            i = buf.find(_FROM_LINE)
            while i >= 0:
                starts.append(base + i + 1)
                i = buf.find(_FROM_LINE, i + 1)
            carry = buf[-(len(_FROM_LINE) - 1) :]
            pos += len(block)
            if len(starts) > 4096:  # move them into the compact arrays as we go
                _add_spans(index, starts)
                starts = starts[-1:]
        if starts:
            _add_spans(index, [*starts, pos])


def _add_spans(index: CorpusIndex, bounds: list[int]) -> None:
    """One mbox message per pair of consecutive ``bounds`` (From_ line offsets, then the end of the file)."""
    for a, b in zip(bounds, bounds[1:], strict=False):
        index.file_no.append(0)
        index.offset.append(a)
        index.length.append(b - a)


def _replace_field(head: bytes, name: bytes, value: bytes) -> bytes:
    # Drop every occurrence of the field (with its folded continuation lines), then add ours first.
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    skipping = False
    lname = name.lower() + b":"
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = line.lower().startswith(lname)
        if not skipping:
            out.append(line)
    return b"\r\n".join([name + b": " + value, *out])


class CorpusPool:
    """Messages of a corpus, read when picked (the pool interface of :class:`smtpbench.load.messages.MessagePool`).

    ``rewrite`` names header fields to replace: ``From`` (the envelope sender),
    ``To`` (the first recipient), ``Message-ID`` (a new one per message).
    ``chunk_size`` > 0 renders BDAT chunks, ``data`` the DATA form.
    """

    def __init__(
        self,
        index: CorpusIndex,
        rewrite: tuple[str, ...] = (),
        sender: str = "",
        recipient: str = "",
        chunk_size: int = 0,
        data: bool = True,
    ) -> None:
        self.index = index
        self.rewrite = rewrite
        self.sender = AddressTemplate(sender)
        self.recipient = AddressTemplate(recipient)
        self.chunk_size = chunk_size
        self.data = data
        self.fd = os.open(index.path, os.O_RDONLY) if index.kind == "mbox" else -1
        if self.fd >= 0:  # closed with the pool (the engine keeps it for the whole run)
            weakref.finalize(self, os.close, self.fd)

    def pick(self, rng: random.Random, n: int = 0, session: int = 0) -> RenderedMessage:
        """Message ``n`` of session ``session``: a corpus message drawn with ``rng``, rewritten, rendered."""
        raw = self.index.read(rng.randrange(len(self.index)), self.fd)
        if self.rewrite:
            raw = self._rewritten(raw, rng, n, session)
        return rendered(raw, "corpus", self.chunk_size, self.data)

    def _rewritten(self, raw: bytes, rng: random.Random, n: int, session: int) -> bytes:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        cut = raw.find(b"\r\n\r\n")
        head, body = (raw, b"") if cut < 0 else (raw[:cut], raw[cut:])
        for name in self.rewrite:
            if name == "From":
                value = self.sender.render(n, session)
            elif name == "To":
                value = self.recipient.render(n, session)
            else:
                value = f"<{n}.{rng.getrandbits(48):012x}@smtpbench.example>"
            head = _replace_field(head, name.encode(), value.encode())
        return head + body
