"""Delivery oracles: how checks see what the server under test delivered.

A delivery oracle is any callable returning every delivered message so far,
oldest first (:data:`~smtpbench.conform.probe.DeliveryOracle`).  Tests pass
the sink's in-memory list; from the command line, ``--store-dir`` reads a
directory of ``*.eml`` files such as ``smtpbench sink --store DIR`` writes, or
a maildir (Postfix, Exim and OpenSMTPD deliver there with LF line ends).
"""

from __future__ import annotations

from pathlib import Path

from smtpbench.conform.probe import DeliveryOracle


def normalise(content: bytes) -> bytes:
    """A stored message with CRLF line ends: files written with LF only (maildir, mbox) are converted.

    A file that already holds a CRLF keeps its octets, so that a bare LF the
    server kept inside a CRLF message stays visible to the checks.
    """
    if b"\r\n" in content:
        return content
    return content.replace(b"\n", b"\r\n")


def _stored(root: Path) -> list[Path]:
    # ``*.eml`` (smtpbench sink --store, drop directories) and maildir files (new/, cur/ at any depth).
    files = set(root.glob("*.eml"))
    for sub in ("new", "cur"):
        files.update(p for p in root.rglob(f"{sub}/*") if p.is_file())
    return sorted(files)


def store_dir_oracle(directory: str) -> DeliveryOracle:
    """An oracle over ``directory``'s ``*.eml`` files and maildir ``new/``/``cur/`` files, by modification time.

    Files that vanish or cannot be read between listing and reading are
    skipped: a mail store that is being written to must not break a check.
    Line ends are normalised to CRLF (:func:`normalise`).
    """
    root = Path(directory)

    def messages() -> list[bytes]:
        found = []
        for path in _stored(root):
            try:
                found.append((path.stat().st_mtime_ns, path.name, normalise(path.read_bytes())))
            except OSError:
                continue
        return [content for _, _, content in sorted(found)]

    return messages
