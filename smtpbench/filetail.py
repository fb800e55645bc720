"""Following a file that another process appends to: the complete lines added since the last read."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path


class FileTail:
    """Reads the complete lines appended to a file since the last call; a line still being written waits.

    ``from_end`` starts at the file's size now (only what is appended later
    counts).  A file that shrank (truncated or replaced) is read again from
    its start, and :attr:`restarted` says so until the next read.  A file
    that cannot be read (not there yet) gives no lines.
    """

    def __init__(self, path: str | Path, from_end: bool = False) -> None:
        self.path = Path(path)
        self.offset = 0
        if from_end:
            with suppress(OSError):  # not there yet: everything in it will be new
                self.offset = self.path.stat().st_size
        self.partial = b""
        #: Modification time of the file at the last read that found it (Unix s).
        self.mtime = 0.0
        self.restarted = False

    def lines(self) -> list[bytes]:
        """The complete lines (without their ``\\n``) appended since the last call."""
        self.restarted = False
        try:
            st = self.path.stat()
            if st.st_size < self.offset:
                self.offset, self.partial, self.restarted = 0, b"", True
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.mtime = st.st_mtime
        self.offset += len(data)
        *done, self.partial = (self.partial + data).split(b"\n")
        return done

    def text_lines(self) -> list[str]:
        """:meth:`lines` as text (UTF-8, undecodable octets replaced), empty lines left out."""
        return [line.decode("utf-8", "replace") for line in self.lines() if line]
