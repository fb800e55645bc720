"""TLS handshake accounting: the ``tls.full``/``tls.resumed`` phases and summary.json's ``tls`` section.

A session's handshake is timed under :data:`FULL` or :data:`RESUMED` (the
summary also shows both together as the ``tls`` phase: :data:`COMBINED`), and
counted in the recorder's plain counts under ``tls.*`` names (so they add up
across shards and workers like every count): :func:`count_handshake` writes
them, :func:`split_tls` turns them into the summary's ``tls`` section (README,
"summary.json") and :func:`join_tls` turns a section back into counts, for
merging.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Phase (histogram tag) of a full handshake, a declined resumption included.
FULL = "tls.full"
#: Phase of an abbreviated handshake that resumed a saved session.
RESUMED = "tls.resumed"
#: The summary's phase of every handshake (FULL and RESUMED added together); not a recorded tag.
COMBINED = "tls"
PREFIX = "tls."
#: Plain counts of the section, in the order it lists them.
SCALARS = ("handshakes", "full", "resumed", "resume_drawn", "resume_offered", "resume_declined")
#: Per-name counts of the section: ``tls.version.<name>`` and ``tls.cipher.<name>``.
FAMILIES = {"version": "versions", "cipher": "ciphers"}


def count_handshake(counts: Counter[str], version: str | None, cipher: str | None, resumed: bool, offered: bool) -> str:
    """Count one completed handshake (its version, cipher and kind); returns the phase to time it under.

    An ``offered`` session the server did not take is a full handshake, also
    counted as ``resume_declined``.
    """
    counts[f"tls.version.{version or 'unknown'}"] += 1
    counts[f"tls.cipher.{cipher or 'unknown'}"] += 1
    if resumed:
        counts["tls.resumed"] += 1
        return RESUMED
    counts["tls.full"] += 1
    if offered:
        counts["tls.resume_declined"] += 1
    return FULL


def count_draw(counts: Counter[str], offered: bool) -> None:
    """Count one session drawn to resume (the ``resume`` share), and whether it had a saved session to offer."""
    counts["tls.resume_drawn"] += 1
    if offered:
        counts["tls.resume_offered"] += 1


def split_tls(counts: dict[str, int], always: bool = False) -> tuple[dict[str, int], dict[str, Any] | None]:
    """``counts`` without the ``tls.*`` names, and those as the summary's ``tls`` section.

    The section is None when there are no such counts, unless ``always`` (a
    run over TLS shows its zeros).  ``handshakes`` = ``full`` + ``resumed``.
    """
    rest: dict[str, int] = {}
    section: dict[str, Any] = {name: 0 for name in SCALARS} | {name: {} for name in FAMILIES.values()}
    found = False
    for name, n in counts.items():
        if not name.startswith(PREFIX):
            rest[name] = n
            continue
        found = True
        what = name[len(PREFIX) :]
        family, dot, member = what.partition(".")  # a version name has dots of its own: split once
        if dot and family in FAMILIES:
            section[FAMILIES[family]][member] = n
        elif what in SCALARS:
            section[what] = n
    if not found and not always:
        return rest, None
    section["handshakes"] = section["full"] + section["resumed"]
    for family in FAMILIES.values():
        section[family] = dict(sorted(section[family].items(), key=lambda kv: (-kv[1], kv[0])))
    return rest, section


def join_tls(section: dict[str, Any] | None) -> dict[str, int]:
    """The counts a ``tls`` section was made from (:func:`split_tls`'s inverse; empty for None)."""
    if not section:
        return {}
    out = {PREFIX + name: int(section.get(name, 0)) for name in SCALARS if name != "handshakes"}
    for family, key in FAMILIES.items():
        out.update({f"{PREFIX}{family}.{member}": int(n) for member, n in section.get(key, {}).items()})
    return out
