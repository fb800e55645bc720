"""Rendering exchanged bytes as ``C: ...`` / ``S: ...`` evidence lines.

Lines that end in CRLF are shown without it; anything else (bare CR or LF,
NUL, 8-bit octets, a missing line end) is shown with escapes, because in a
conformance report those octets are usually the point.  Very long lines and
very long bodies are abbreviated, with their real size stated.
"""

from __future__ import annotations

import re

MAX_LINE_CHARS = 160
MAX_LINES = 12
REDACTED = "<redacted>"

_LINES = re.compile(rb"[^\n]*\n|[^\n]+")


def _escape(data: bytes) -> str:
    out = []
    for b in data:
        if b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def render_line(line: bytes) -> str:
    """One line as evidence text: a clean CRLF ending is dropped, any other control octet escaped."""
    clean = line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]
    body = line[:-2] if clean else line
    text = _escape(body)
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:100]}… [{len(body)} octets]"
    return text


def render(prefix: str, data: bytes, max_lines: int = MAX_LINES) -> list[str]:
    """Render ``data`` as lines starting with ``prefix`` (``"C: "`` or ``"S: "``).

    Guarantees: every octet of ``data`` is accounted for (shown, escaped, or
    counted in an abbreviation note); at most ``max_lines`` + 1 lines come out.
    """
    lines = _LINES.findall(data)
    if not lines:
        return [f"{prefix}(empty write)"] if prefix.startswith("C") else []
    # Lines are split on LF only, so a bare CR stays visible inside its line.
    shown = [prefix + render_line(x) for x in lines]
    if len(shown) > max_lines:
        head = max_lines - 2
        hidden = lines[head:-2]
        shown = shown[:head] + [f"{prefix}… {len(hidden)} more lines, {sum(map(len, hidden))} octets …"] + shown[-2:]
    return shown


def render_log(log: list[tuple[str, bytes]], secrets: set[bytes] | None = None) -> list[str]:
    """Render a connection ``raw_log`` (">" sent, "<" received) as a transcript.

    Consecutive chunks in one direction are joined first (TCP splits them
    arbitrarily); a sent chunk listed in ``secrets`` is shown as
    ``<redacted>`` so credentials never reach a report.
    """
    out: list[str] = []
    merged: list[tuple[str, bytes, bool]] = []
    for direction, data in log:
        secret = bool(secrets) and direction == ">" and data in (secrets or set())
        if merged and merged[-1][0] == direction and not secret and not merged[-1][2]:
            merged[-1] = (direction, merged[-1][1] + data, False)
        else:
            merged.append((direction, data, secret))
    for direction, data, secret in merged:
        if secret:
            out.append(f"C: {redact_command(data)}")
        else:
            out.extend(render("C: " if direction == ">" else "S: ", data, max_lines=200))
    return out


def redact_command(data: bytes) -> str:
    """A secret write as evidence: ``AUTH MECH <redacted>`` keeps the mechanism, anything else is just ``<redacted>``."""
    words = data.split(b" ", 2)
    if len(words) >= 2 and words[0].upper() == b"AUTH":
        mech = words[1].strip().decode("ascii", "replace")
        return f"AUTH {mech} {REDACTED}" if len(words) > 2 else f"AUTH {mech}"
    return REDACTED
