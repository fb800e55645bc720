"""Generic helpers for TOML configuration: loading, overrides, typed access, dumping.

Nothing here knows the profile schema (that is :mod:`smtpbench.load.profile`,
validated with the field types of :mod:`smtpbench.fields`), and nothing here
imports pydantic.  Every failure is a :class:`~smtpbench.errors.ConfigError`
whose ``str()`` is one line naming the file and the key path.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from smtpbench.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SECRET_WORDS = frozenset({"password", "secret", "token", "pass"})
REDACTED = "***"


def shown(value: object, limit: int = 40) -> str:
    """A one-line rendering of ``value`` of at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(text: str, limit: int = 80) -> str:
    """``text`` on one line with control characters escaped, at most ``limit`` characters, unquoted."""
    escaped = repr(text)[1:-1]
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def key_part(name: str) -> str:
    """``name`` as it would be written in TOML: bare if possible, else quoted."""
    # A JSON string is a valid TOML basic string (the few escapes both need are spelt alike).
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def join_key(prefix: str, name: str) -> str:
    """The dotted key path of ``name`` inside the table at ``prefix``."""
    part = key_part(name)
    return f"{prefix}.{part}" if prefix else part


_TYPE_NAMES: tuple[tuple[Any, str], ...] = ((bool, "a boolean"), (int, "an integer"), (float, "a float"))
_TYPE_NAMES += (
    (str, "a string"),
    (dict, "a table"),
    (list, "an array"),
    ((datetime.date, datetime.time), "a date/time"),
)


def type_name(value: object) -> str:
    """The TOML name of ``value``'s type, for "got a string" style messages."""
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (case-insensitive), or None."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def parse_toml_text(text: str, file: str | None) -> dict[str, Any]:
    """Parse TOML ``text``; a syntax error becomes a ConfigError with line:column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split())
        position = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if position:
            line, column = int(position.group(1)), int(position.group(2))
        else:
            # "(at end of document)": point just past the last character.
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message).strip()
        where = f"{file}:{line}:{column}" if file else None
        loc = None if file else f"line {line}, column {column}"
        raise ConfigError(f"TOML syntax error: {message}", file=where, key=loc) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document at ``path`` as a dict.

    A missing or unreadable file, a file that is not UTF-8, or a TOML syntax
    error raises ConfigError (syntax errors as ``FILE:LINE:COLUMN: ...``).
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=name, hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a profile file", file=name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (bad byte at offset {exc.start})", file=name) from None
    return parse_toml_text(text, name)


def parse_override_value(text: str) -> Any:
    """The value of an override: a TOML value if ``text`` is one, else the text itself.

    ``10`` is an int, ``true`` a bool, ``"x"`` and ``x`` both the string x,
    ``[1,2]`` an array, ``{a=1}`` a table; ``30s`` stays the string "30s".
    """
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        parsed = tomllib.loads(f"v = {stripped}\n")
    except tomllib.TOMLDecodeError:
        return stripped
    # A value like `1\nother = 2` would smuggle a second key in; keep it as text.
    if set(parsed) != {"v"}:
        return stripped
    return parsed["v"]


def apply_override(data: dict[str, Any], assignment: str, *, origin: str = "--set") -> list[str]:
    """Apply ``dotted.key=value`` to ``data`` in place; returns the key parts set.

    Missing intermediate tables are created.  An assignment without ``=``, a
    bad key path, or a path through a non-table value raises ConfigError.
    """
    if "=" not in assignment:
        raise ConfigError(f"{origin} {shown(assignment)} has no '='", expected="KEY=VALUE like workload.rate=100")
    key_text, _, value_text = assignment.partition("=")
    parts = key_text.strip().split(".")
    if not all(_BARE_KEY.fullmatch(part) for part in parts):
        expected = "dotted bare keys like workload.rate (letters, digits, _ and -)"
        raise ConfigError(f"{origin}: bad key path {shown(key_text)}", expected=expected)
    table = data
    for i, part in enumerate(parts[:-1]):
        child = table.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{origin} {shown(assignment)}: {where} is {type_name(child)}, not a table", key=where)
        table = child
    table[parts[-1]] = parse_override_value(value_text)
    return parts


def is_secret_key(name: str) -> bool:
    """True for keys holding secrets: password, secret, token, pass (any case), also as a suffix like api_token."""
    last = re.split(r"[_\-.]", name.lower())[-1]
    return name.lower() in _SECRET_WORDS or last in _SECRET_WORDS


def redact(data: Any) -> Any:
    """A deep copy of ``data`` with every secret-named key's value replaced by ``"***"``."""
    if isinstance(data, dict):
        return {k: (REDACTED if is_secret_key(str(k)) else redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return copy.copy(data)


def dump_toml(data: Mapping[str, Any]) -> str:
    """``data`` as TOML text that :func:`tomllib.loads` reads back equal; keys whose value is None are omitted."""
    import tomli_w  # only the resolved-profile dump needs it

    return tomli_w.dumps(_without_none(data))


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value
