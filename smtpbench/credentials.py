"""Credentials read from files and the environment: users files and bearer tokens.

Shared by the load engine (``[target.auth]``) and the sink (``--auth-users-file``,
``--auth-token-file``).  Secrets are only ever read here, never from a profile or a
command line, and no error message quotes one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from smtpbench.config import shown
from smtpbench.errors import ConfigError

#: The environment variable a bearer token (XOAUTH2, OAUTHBEARER) is read from unless a token file is named.
TOKEN_ENV = "SMTPBENCH_TOKEN"
#: More accounts than this in one users file is surely a mistake (each is held in memory).
MAX_USERS = 1_000_000


def read_secret_file(path: str | Path, key: str, what: str = "password") -> str:
    """The content of ``path`` without its trailing newline.

    Raises ConfigError (exit 2, naming ``key``) when the file cannot be read or is empty.
    """
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"cannot read {what} file {shown(str(path), 80)}: {reason}", key=key) from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"{what} file {shown(str(path), 80)} is empty", key=key)
    return value


def token(token_file: str | Path | None, key: str) -> str:
    """The bearer token: from ``token_file`` when given, else from ``$SMTPBENCH_TOKEN``; ConfigError when none."""
    if token_file is not None:
        return read_secret_file(token_file, key, "token")
    value = os.environ.get(TOKEN_ENV, "").strip()
    if not value:
        raise ConfigError(f"environment variable {TOKEN_ENV} is not set or empty", key=key, hint="or name a token_file")
    return value


def read_users(path: str | Path, key: str) -> list[tuple[str, str]]:
    """The ``username,password`` rows of a CSV file, in file order.

    Guarantees at least one row, non-empty names and passwords without CR, LF
    or NUL, no duplicate names.  Otherwise raises ConfigError naming the file
    and line (never the password).  Blank lines and lines starting with ``#``
    are skipped; a first row ``username,password`` is taken as a header.
    """
    where = shown(str(path), 80)
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"cannot read users file {where}: {reason}", key=key) from None
    users: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = next(csv.reader([line]))
        if len(row) != 2:
            raise ConfigError(f"{where} line {line_no}: expected 2 fields (username,password), got {len(row)}", key=key)
        name, password = row[0].strip(), row[1]
        if not users and not seen and (name.lower(), password.strip().lower()) == ("username", "password"):
            seen.add("")  # the header: skipped once
            continue
        if not name or not password:
            raise ConfigError(f"{where} line {line_no}: empty {'username' if not name else 'password'}", key=key)
        if any(c in name + password for c in "\r\n\0") or any(c.isspace() for c in name):
            raise ConfigError(f"{where} line {line_no}: a control character or space in the row", key=key)
        if name in seen:
            raise ConfigError(f"{where} line {line_no}: user {shown(name, 40)} listed twice", key=key)
        seen.add(name)
        users.append((name, password))
        if len(users) > MAX_USERS:
            raise ConfigError(f"{where}: more than {MAX_USERS} users", key=key)
    if not users:
        raise ConfigError(f"users file {where} has no username,password row", key=key)
    return users
