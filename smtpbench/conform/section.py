"""The ``[conform]`` profile section: the long options of ``smtpbench conform`` as keys.

The same model validates the command-line values (so a bad ``--timeout`` and a
bad ``conform.timeout`` get the same words).  Imports pydantic: import lazily.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer

from smtpbench.config import shown
from smtpbench.conform.options import PASSWORD_ENV
from smtpbench.fields import Bool, EhloName, Invalid, Table, Text, checker, got, key, number, whole


def _mailbox(value: Any) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "<>\r\n "):
        raise Invalid(f"{shown(value)} is not a mailbox", expected="local@domain")
    return value


def _names(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise got(value, "a string or an array of strings")
    return tuple(items)


Mailbox = Annotated[str, checker(_mailbox, str)]
Names = Annotated[tuple[str, ...], checker(_names, str | list[str]), PlainSerializer(list)]


class ConformSection(Table):
    """``[conform]``: settings of ``smtpbench conform`` (command-line values win); dashes or underscores."""

    refused = {
        "password": (
            "a password may not be stored in a profile",
            f"use password_file or the {PASSWORD_ENV} environment variable",
        )
    }
    dashes = True

    starttls: Bool = key(False, "Upgrade every session with STARTTLS.")
    tls: Bool = key(False, "Implicit TLS from connect (e.g. port 465); not with starttls.")
    ca_file: Text | None = key(None, "CA bundle (PEM) to verify the server with.")
    insecure: Bool = key(False, "Do not verify the server certificate (test servers only).")
    user: Text | None = key(None, f"AUTH user; the password comes from ${PASSWORD_ENV} or password_file.")
    password_file: Text | None = key(None, "File whose first line is the AUTH password.")
    rcpt: Mailbox | None = key(None, "A valid local recipient (checks that deliver need it).")
    foreign_rcpt: Mailbox | None = key(None, "A recipient in a domain the server must not relay to.")
    helo: EhloName | None = key(None, "EHLO name.")
    sender: Mailbox | None = key(None, "MAIL FROM address.")
    only: Names = key((), "Check ids, id prefixes or areas to run.")
    skip: Names = key((), "Check ids, id prefixes or areas to leave out.")
    slow: Bool = key(False, "Also run the checks that take minutes.")
    timeout: Annotated[float, number(0, 600, positive=True)] = key(10.0, "Seconds to wait for each reply.")
    check_timeout: Annotated[float, number(0, positive=True)] | None = key(
        None, "Seconds one check may take (default max(60, 6 x timeout))."
    )
    concurrency: Annotated[int, whole(1, 16)] = key(1, "Checks run at once (1-16).")
    json_path: Text | None = key(None, alias="json", doc="Write the JSON report here.")
    junit: Text | None = key(None, "Write a JUnit XML report here.")
    transcript: Text | None = key(None, "Directory for one transcript file per check.")
    store_dir: Text | None = key(None, "Directory of delivered *.eml files (the delivery oracle).")
    quiet: Bool = key(False, "Only failures and the summary.")
    # The CI gate (README "Verdicts"); [conform.expect] waivers are read by conform/waivers.py, not here.
    baseline: Text | None = key(None, "An earlier --json report: failures already in it do not fail the run.")
