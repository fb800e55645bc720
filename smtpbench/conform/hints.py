"""Fix-it hints: the server setting that fixes a finding, for servers recognised by their banner.

The hints are data (``hints.toml`` beside this module).  :func:`identify`
names the server from the greeting and the EHLO reply; :func:`apply_hints`
attaches the setting to each ``fail`` or ``warn`` result it has one for.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

from smtpbench.conform.model import CheckResult, Verdict


@cache
def _servers() -> dict[str, tuple[list[re.Pattern[str]], dict[str, str]]]:
    data = tomllib.loads(resources.files("smtpbench.conform").joinpath("hints.toml").read_text("utf-8"))
    return {
        name: ([re.compile(p, re.I) for p in entry.get("match", [])], dict(entry.get("fix", {})))
        for name, entry in data.get("server", {}).items()
    }


def identify(banner: str) -> str | None:
    """The name of the server ``banner`` (greeting and EHLO text) identifies, or ``None``."""
    for name, (patterns, _) in _servers().items():
        if any(p.search(banner) for p in patterns):
            return name
    return None


def apply_hints(results: list[CheckResult], banner: str) -> str | None:
    """Attach ``hint`` to the ``fail``/``warn`` results of a recognised server; return the server's name."""
    name = identify(banner)
    if name is None:
        return None
    fixes = _servers()[name][1]
    for r in results:
        if r.verdict in (Verdict.FAIL, Verdict.WARN) and r.id in fixes:
            r.hint = f"{name}: {fixes[r.id]}"
    return name
