"""User-facing error types shared by every sub-command.

A :class:`ConfigError` is what a user gets for a bad profile or bad command
line arguments: the CLI prints ``str(error)`` as one line and exits 2, never
a traceback.  A :class:`RunError` means the run could not be carried out at
all (exit 3).
"""

from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(Exception):
    """A profile or argument problem, pinned to a file and a key path.

    ``str()`` renders ``FILE: KEY: PROBLEM (expected EXPECTED) — did you mean X?``
    with the parts that are known.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.file = file
        self.key = key
        self.expected = expected
        self.hint = hint

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}: ")
        if self.key:
            parts.append(f"{self.key}: ")
        parts.append(self.problem)
        if self.expected:
            parts.append(f" (expected {self.expected})")
        if self.hint:
            parts.append(f"; {self.hint}")
        return "".join(parts)


class RunError(Exception):
    """The run could not be carried out (target unusable, results not writable)."""


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_RUN_ERROR = 3


def fail(exc: Exception, verb: str) -> NoReturn:
    """End a command on ``exc`` with its one stderr line and the documented exit code.

    A :class:`ConfigError` (bad input) prints ``smtpbench: error: ...`` and exits 2; anything else means the
    work could not be done: ``smtpbench: VERB failed: ...``, exit 3.  Every sub-command ends its errors here.
    """
    if isinstance(exc, ConfigError):
        print(f"smtpbench: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE)
    print(f"smtpbench: {verb} failed: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_RUN_ERROR)
