"""Delivery oracles: how checks see what the server under test delivered.

A delivery oracle is any callable returning every delivered message so far,
oldest first (:data:`~smtpbench.conform.probe.DeliveryOracle`).  Tests pass
the sink's in-memory list; from the command line, ``--store-dir`` reads a
directory of ``*.eml`` files such as ``smtpbench sink --store DIR`` writes (or
a test server's maildir-like drop directory).
"""

from __future__ import annotations

from pathlib import Path

from smtpbench.conform.probe import DeliveryOracle


def store_dir_oracle(directory: str) -> DeliveryOracle:
    """An oracle over ``directory/*.eml``, ordered by modification time then name.

    Files that vanish or cannot be read between listing and reading are
    skipped: a mail store that is being written to must not break a check.
    """
    root = Path(directory)

    def messages() -> list[bytes]:
        found = []
        for path in root.glob("*.eml"):
            try:
                found.append((path.stat().st_mtime_ns, path.name, path.read_bytes()))
            except OSError:
                continue
        return [content for _, _, content in sorted(found)]

    return messages
