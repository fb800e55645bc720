"""Other ends: a Maildir folder or an mbox file that the server under test delivers to.

Both are polled every :data:`POLL_S` (in a worker thread: file I/O must not
stall the load).  Only what appears after the watcher started counts.
Arrival time: a Maildir message's file modification time; for an mbox, the
file's modification time when the new messages were read (so at most one
poll period late when several arrive between polls).
"""

from __future__ import annotations

import os
from pathlib import Path

from smtpbench.delivery.ids import find_id
from smtpbench.filetail import FileTail

POLL_S = 0.1
#: Octets of a message read to find its header block.
HEAD_MAX = 65536
#: New Maildir files read per poll (the rest on the next one).
MAX_PER_POLL = 20_000

Arrivals = list[tuple[str | None, float]]


class MaildirWatcher:
    """New messages in a Maildir (``new/`` and ``cur/``), each reported once."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.seen: set[str] = set()
        self.seen.update(self._names())

    def _names(self) -> list[str]:
        names = []
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.path / sub) as it:
                    names += [f"{sub}/{e.name}" for e in it]
            except (FileNotFoundError, NotADirectoryError):
                continue
        return names

    @staticmethod
    def _key(name: str) -> str:
        # A message moves from new/ to cur/ and gains ":2,FLAGS" when read: same message.
        return name.split("/", 1)[1].split(":", 1)[0]

    def scan(self) -> Arrivals:
        """The ids and arrival times (Unix s) of messages that appeared since the last scan."""
        out: Arrivals = []
        keys = {self._key(n) for n in self.seen}
        for name in self._names():
            key = self._key(name)
            if key in keys:
                continue
            if len(out) >= MAX_PER_POLL:
                break
            path = self.path / name
            try:
                mtime = path.stat().st_mtime
                with open(path, "rb") as f:
                    head = f.read(HEAD_MAX)
            except FileNotFoundError:  # moved to cur/ meanwhile: found there next time
                continue
            except OSError:
                continue
            self.seen.add(name)
            keys.add(key)
            out.append((find_id(head), mtime))
        return out


class MboxWatcher:
    """Messages appended to an mbox file (messages start with a ``From `` line)."""

    def __init__(self, path: str) -> None:
        self.tail = FileTail(path, from_end=True)
        self._in_header = False
        self._found = False

    def scan(self) -> Arrivals:
        """The ids (and the file's modification time) of the messages appended since the last scan."""
        lines = self.tail.lines()
        if self.tail.restarted:  # truncated or replaced: read from its start
            self._in_header = False
        mtime = self.tail.mtime
        out: Arrivals = []
        for line in lines:
            if line.startswith(b"From "):
                self._in_header, self._found = True, False
            elif self._in_header:
                if line in (b"", b"\r"):
                    self._in_header = False
                    if not self._found:  # a message without our id: counted as unexpected
                        out.append((None, mtime))
                elif not self._found and line[:15].lower() == b"x-smtpbench-id:":
                    self._found = True
                    out.append((find_id(line + b"\n\n"), mtime))
        return out
