"""The check registry: every module in this package that defines ``CHECKS``.

A check module is a plain module with ``CHECKS: tuple[Check, ...]``; adding a
file is enough to register its checks.  :func:`all_checks` returns them in
catalogue order; :func:`select` applies ``--only``/``--skip``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache

from smtpbench.conform.model import Check
from smtpbench.errors import ConfigError

#: Catalogue order of id prefixes (conformance-checks.md sections 1-19).
PREFIX_ORDER = (
    "G",
    "C",
    "E",
    "X",
    "S",
    "R",
    "V",
    "A",
    "D",
    "L",
    "P",
    "T",
    "U",
    "Z",
    "B",
    "K",
    "N",
    "ES",
    "LG",
    "SEC",
    "TO",
)

_ID = re.compile(r"([A-Z]+)-(\d+)")


def sort_key(check_id: str) -> tuple[int, int, str]:
    """Catalogue position of an id such as ``X-04`` (unknown prefixes sort last)."""
    m = _ID.fullmatch(check_id)
    if m is None:
        return (len(PREFIX_ORDER), 0, check_id)
    prefix, number = m.group(1), int(m.group(2))
    pos = PREFIX_ORDER.index(prefix) if prefix in PREFIX_ORDER else len(PREFIX_ORDER)
    return (pos, number, check_id)


@cache
def all_checks() -> tuple[Check, ...]:
    """Every registered check, in catalogue order; duplicate ids are a programming error."""
    found: dict[str, Check] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for check in getattr(module, "CHECKS", ()):
            if check.id in found:
                raise RuntimeError(f"check {check.id} defined twice ({info.name})")
            found[check.id] = check
    return tuple(sorted(found.values(), key=lambda c: sort_key(c.id)))


def groups(checks: tuple[Check, ...]) -> dict[str, set[str]]:
    """Names usable in ``--only``/``--skip`` besides ids: areas and id prefixes (case-insensitive)."""
    out: dict[str, set[str]] = {}
    for c in checks:
        out.setdefault(c.area.lower(), set()).add(c.id)
        m = _ID.fullmatch(c.id)
        if m:
            out.setdefault(m.group(1).lower(), set()).add(c.id)
    return out


def _resolve(names: tuple[str, ...], checks: tuple[Check, ...], option: str) -> set[str]:
    ids = {c.id.lower(): c.id for c in checks}
    by_group = groups(checks)
    out: set[str] = set()
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            key = name.lower()
            if key in ids:
                out.add(ids[key])
            elif key in by_group:
                out |= by_group[key]
            else:
                valid = ", ".join(c.id for c in checks)
                # From the checks themselves: a filter on the group names dropped 3-letter areas (dsn).
                areas = ", ".join(sorted({c.area.lower() for c in checks}))
                raise ConfigError(
                    f"unknown check or group {name!r}",
                    key=option,
                    expected=f"one of the check ids {valid} or an area ({areas})",
                )
    return out


def select(only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[Check]:
    """The checks to run: all, or those named by ``only``, minus those named by ``skip``.

    Names are ids (``X-04``), id prefixes (``D``) or areas (``data``),
    comma-separated or repeated; an unknown name raises :class:`ConfigError`.
    """
    checks = all_checks()
    chosen = _resolve(only, checks, "--only") if only else {c.id for c in checks}
    chosen -= _resolve(skip, checks, "--skip")
    return [c for c in checks if c.id in chosen]
