"""Human-friendly quantities in profiles: durations, sizes, ratios, addresses and worker counts.

Every parser takes the raw TOML value and the key path it came from, and
either returns a plain number or raises :class:`~smtpbench.errors.ConfigError`
naming that key and the accepted form.  The ``format_*`` functions produce
text the parsers read back to the same value, which is what the resolved
profile and the embedded sink's command line rely on.
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal

from smtpbench.errors import ConfigError

DURATION_FORM = 'a duration like "30s", "5m", "1h", "250ms", "1m30s" or a number of seconds'
POSITIVE_DURATION_FORM = 'a positive duration like "30s", "5m", "250ms" or a number of seconds'
SIZE_FORM = 'a size like "10KiB", "1MiB", "1.5KB" (KB=1000, KiB=1024) or a whole number of octets'
RATIO_FORM = 'a ratio between 0 and 1 (like 0.05) or a percentage like "5%"'

_DURATION_UNITS: dict[str, float] = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(us|µs|ms|s|m|h|d)", re.ASCII | re.IGNORECASE)
_DURATION_WHOLE = re.compile(rf"(?:\s*{_NUMBER}\s*(?:us|µs|ms|s|m|h|d))+\s*", re.ASCII | re.IGNORECASE)
_BARE_NUMBER = re.compile(rf"\s*{_NUMBER}\s*", re.ASCII)

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(rf"\s*({_NUMBER})\s*([kmg]i?b|b)?\s*", re.ASCII | re.IGNORECASE)

# The same forms as JSON Schema patterns (ECMA-262 subset: no inline flags), for editors; the parsers
# above stay the authority (they also bound the values).
_NUM = r"(\d+(\.\d*)?|\.\d+)"
DURATION_PATTERN = rf"^\s*({_NUM}\s*([uU][sS]|µ[sS]|[mM][sS]|[sSmMhHdD])\s*)+$|^\s*{_NUM}\s*$"
SIZE_PATTERN = rf"^\s*{_NUM}\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"
RATIO_PATTERN = rf"^\s*{_NUM}\s*%?\s*$"

# Beyond this a value is a typo, not a benchmark: 100 years, 1 TiB.
_MAX_SECONDS = 100 * 365 * 86400.0
_MAX_OCTETS = 1024**4


def _shown(value: object) -> str:
    """A one-line, bounded rendering of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: object) -> bool:
    # bool is an int subclass; `true` is never meant as 1 second.
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: object, key: str, *, file: str | None = None, positive: bool = False) -> float:
    """Seconds in ``value``, which is a number of seconds or text like ``"1m30s"``.

    Guarantees a finite, non-negative float (strictly positive with
    ``positive=True``); anything else raises ConfigError naming ``key``.
    Units: us, ms, s, m, h, d, combinable (``"1h30m"``); a bare number or
    numeric string means seconds.
    """
    expected = POSITIVE_DURATION_FORM if positive else DURATION_FORM
    seconds: float
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = value.strip()
        if _BARE_NUMBER.fullmatch(text):
            seconds = float(text)
        elif text and _DURATION_WHOLE.fullmatch(text):
            seconds = sum(float(num) * _DURATION_UNITS[unit.lower()] for num, unit in _DURATION_PART.findall(text))
        else:
            raise ConfigError(f"{_shown(value)} is not a duration", file=file, key=key, expected=expected)
    else:
        raise ConfigError(f"got {type(value).__name__} {_shown(value)}", file=file, key=key, expected=expected)
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_SECONDS:
        raise ConfigError(f"{_shown(value)} is out of range", file=file, key=key, expected=expected)
    if positive and seconds == 0:
        raise ConfigError("a zero duration is not allowed here", file=file, key=key, expected=expected)
    return seconds


def parse_size(value: object, key: str, *, file: str | None = None) -> int:
    """Octets in ``value``: a whole number, or text like ``"10KiB"``/``"1.5KB"``.

    KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024 (case-insensitive);
    a fractional result is rounded to the nearest octet.  Guarantees an int in
    0..1 TiB, else ConfigError naming ``key``.
    """
    octets: float
    if isinstance(value, int) and not isinstance(value, bool):
        octets = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ConfigError(f"{_shown(value)} is not a size", file=file, key=key, expected=SIZE_FORM)
        number, unit = match.group(1), (match.group(2) or "").lower()
        if not unit and "." in number:
            raise ConfigError(
                f"{_shown(value)} is not a whole number of octets", file=file, key=key, expected=SIZE_FORM
            )
        octets = float(number) * _SIZE_UNITS[unit]
    else:
        raise ConfigError(f"got {type(value).__name__} {_shown(value)}", file=file, key=key, expected=SIZE_FORM)
    if not math.isfinite(octets) or octets < 0 or octets > _MAX_OCTETS:
        raise ConfigError(f"{_shown(value)} is out of range", file=file, key=key, expected=f"{SIZE_FORM}, at most 1TiB")
    return int(round(octets))


def parse_ratio(value: object, key: str, *, file: str | None = None) -> float:
    """A probability in 0..1 from a number or a percentage string like ``"5%"``.

    Guarantees a finite float with 0 <= r <= 1, else ConfigError naming ``key``.
    """
    ratio: float
    if _is_number(value):
        ratio = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = value.strip()
        try:
            ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"{_shown(value)} is not a ratio", file=file, key=key, expected=RATIO_FORM) from None
    else:
        raise ConfigError(f"got {type(value).__name__} {_shown(value)}", file=file, key=key, expected=RATIO_FORM)
    if not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{_shown(value)} is out of range", file=file, key=key, expected=RATIO_FORM)
    return ratio


def format_duration(seconds: float) -> str:
    """Text :func:`parse_duration` reads back to exactly ``seconds``.

    The shortest of ``"30s"``, ``"250ms"``, ``"1.5s"`` that round-trips, else
    a long decimal number of seconds; never compound units or exponents, so
    the text is also a valid flag value.
    """
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, factor in (("h", 3600), ("m", 60)):
            if whole >= factor and whole % factor == 0:
                return f"{whole // factor}{unit}"
        return f"{whole}s"
    candidates = [f"{_trim(seconds * 1000, 3)}ms", f"{_trim(seconds, 6)}s"]
    for text in candidates if seconds < 1 else reversed(candidates):
        if parse_duration(text, "") == seconds:
            return text
    # repr() is the shortest text that round-trips; Decimal spells it without an exponent.
    return f"{format(Decimal(repr(seconds)), 'f')}s"


def format_size(octets: int) -> str:
    """Text :func:`parse_size` reads back to exactly ``octets``.

    Exact multiples of 1 MiB/1 KiB print as ``"4MiB"``/``"10KiB"``; anything
    else prints as a bare octet count.
    """
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if octets >= factor and octets % factor == 0:
            return f"{octets // factor}{unit}"
    return str(octets)


def _trim(number: float, places: int) -> str:
    text = f"{number:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_host_port(text: str, key: str = "--target", default_port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT``; with ``default_port``, also ``HOST``, ``[IPv6]``, ``IPv6``.

    Raises ConfigError (naming ``key``) for a missing or invalid port, an
    empty host, or an unbracketed IPv6 address.
    """
    expected = f"HOST{':PORT' if default_port is None else '[:PORT]'}, like 127.0.0.1:2525 or [::1]:25"
    value = text.strip()
    if default_port is not None and not value.startswith("[") and value.count(":") != 1:
        value = f"[{value}]" if ":" in value else f"{value}:"  # a name, or a bare IPv6 address
    if default_port is not None and (value.endswith(("]", ":"))):
        value = value.removesuffix(":") + f":{default_port}"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{_shown(text)} is not an address", key=key, expected=expected)
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ConfigError(f"{_shown(text)} has no port", key=key, expected=expected)
        if ":" in host:
            raise ConfigError(
                f"{_shown(text)}: put an IPv6 address in brackets", key=key, expected="[IPv6]:PORT like [::1]:25"
            )
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{_shown(text)} has no valid host", key=key, expected=expected)
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(f"{_shown(text)} has no valid port", key=key, expected="a port between 1 and 65535")
    if not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"port {port_text} is out of range", key=key, expected="a port between 1 and 65535")
    return host, int(port_text)


#: Most worker processes one command may start (``smtpbench run`` and ``smtpbench sink``, ``--workers``).
MAX_WORKERS = 1024
WORKERS_EXPECTED = f'an integer between 1 and {MAX_WORKERS}, or "auto"'


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on every OS
        return max(os.cpu_count() or 1, 1)


def parse_workers_option(text: str, key: str = "--workers") -> int | str:
    """``--workers N|auto``: a count 1 .. MAX_WORKERS or ``"auto"`` (any case); ConfigError (exit 2) otherwise."""
    value = text.strip()
    if value.lower() == "auto":
        return "auto"
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(f"{_shown(value)} is not a worker count", key=key, expected=WORKERS_EXPECTED)
    if not 1 <= int(value) <= MAX_WORKERS:
        raise ConfigError(f"{int(value)} is out of range", key=key, expected=WORKERS_EXPECTED)
    return int(value)


def worker_count(value: int | str) -> int:
    """A worker count as a number of processes: ``"auto"`` is :func:`usable_cpus`."""
    return usable_cpus() if value == "auto" else int(value)
