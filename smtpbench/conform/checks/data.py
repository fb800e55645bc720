"""Section 8: DATA, transparency and SMTP smuggling (D-01..D-08).

Every message goes only to ``--rcpt`` (the smuggled inner transaction too),
so a vulnerable server still delivers nothing outside itself.  Checks whose
last point needs to see what was stored use the delivery oracle when there
is one, and say so (``info``) when there is none.
"""

from __future__ import annotations

import secrets

from smtpbench.conform.checks._util import (
    await_delivered,
    check_code,
    delivered_count,
    passed,
    send_body,
    start_data,
    test_message,
)
from smtpbench.conform.levels import sentence
from smtpbench.conform.model import Check, Finding, Level, Verdict, worst
from smtpbench.conform.probe import Probe
from smtpbench.protocol.commands import encode_data

AREA = "data"
RCPT = frozenset({"rcpt"})
RCPT_SINK = frozenset({"rcpt", "sink"})

NO_ORACLE = "delivered content not verified (no delivery oracle)"


def _head(probe: Probe, tag: str) -> bytes:
    """The headers of a probe message (CRLF, ending with the blank line), with a unique tag in the Subject."""
    return test_message(probe, tag, body="").encode()


async def _settled(probe: Probe, token: bytes, before: int) -> list[bytes] | None:
    return await await_delivered(probe, token, before)


async def trace_header(probe: Probe) -> Finding:
    tag = f"D-01-{secrets.token_hex(4)}"
    before = delivered_count(probe)
    session = await probe.connect()
    data = await start_data(session)
    end = await send_body(session, encode_data(test_message(probe, tag).encode()))
    await session.close()
    finding = check_code(probe, end, 250, reason="a complete message must be accepted")
    if finding.verdict is not Verdict.PASS:
        return finding
    stored = await _settled(probe, tag.encode(), before)
    if stored is None:
        return Finding(Verdict.INFO, f"354 then 250; {NO_ORACLE}", data.lines() + end.lines()[-1:])
    if not stored:
        return Finding(Verdict.FAIL, "the accepted message was not delivered", end.lines())
    fields = _header_fields(stored[0])
    names = [f.split(b":", 1)[0].strip().lower() for f in fields]
    ours = names.index(b"from") if b"from" in names else len(names)
    if b"received" not in names[:ours]:
        # Other trace fields (Return-Path, Delivered-To, Received-SPF, Authentication-Results...) may come
        # first; what matters is a Received: line above the message's own header fields (4.4).
        return Finding(
            Verdict.FAIL,
            "the delivered message has no Received: trace line above its own header fields",
            [f"stored header fields: {', '.join(n.decode('ascii', 'replace') for n in names[:8])}"],
        )
    received_field = fields[names.index(b"received")]
    received = b" ".join(received_field.split())[:400].decode("utf-8", "replace")
    helo = probe.options.helo
    if helo not in received or "[" not in received:
        return Finding(
            Verdict.WARN,
            "the Received: from clause lacks the EHLO name or the client address literal",
            [f"stored: {received}"],
        )
    return Finding(
        Verdict.PASS, "354, 250, and a Received: line naming the EHLO name and address", [f"stored: {received}"]
    )


def _header_fields(message: bytes) -> list[bytes]:
    """The header fields of a stored message (CRLF), each unfolded into one item."""
    fields: list[bytes] = []
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        elif line:
            fields.append(line)
    return fields


def _lines_of(message: bytes) -> list[bytes]:
    return message.split(b"\r\n\r\n", 1)[-1].split(b"\r\n")


async def dot_stuffing(probe: Probe) -> Finding:
    tag = f"D-02-{secrets.token_hex(4)}"
    before = delivered_count(probe)
    session = await probe.connect()
    await start_data(session)
    # The wire form: each of these lines is already stuffed.
    wire = _head(probe, tag) + b"..\r\n..x\r\n...\r\nx.\r\n.\r\n"
    end = await send_body(session, wire)
    extra = await session.extra(end)
    await session.close()
    if extra:
        return Finding(Verdict.FAIL, f"more than one reply to the message ({end.outcome})", end.lines())
    finding = check_code(probe, end, 250, reason="stuffed lines are data; only a lone '.' ends it")
    if finding.verdict is not Verdict.PASS:
        return finding
    stored = await _settled(probe, tag.encode(), before)
    if stored is None:
        return Finding(Verdict.INFO, f"accepted with one 250; {NO_ORACLE}", end.lines())
    if not stored:
        return Finding(Verdict.FAIL, "the accepted message was not delivered", end.lines())
    body = _lines_of(stored[0])
    want = [b".", b".x", b"..", b"x."]
    if body[: len(want)] != want:
        return Finding(Verdict.FAIL, f"stored lines are {body[:4]!r}, expected {want!r}", end.lines())
    return Finding(Verdict.PASS, "stored as '.', '.x', '..', 'x.'", end.lines())


async def line_length(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    await start_data(session)
    end = await send_body(session, encode_data(test_message(probe, "D-03a", body="y" * 998 + "\r\n").encode()))
    findings.append(check_code(probe, end, 250, reason="a 1000-octet text line must be accepted"))
    if session.closed:
        await session.close()
        return worst(findings)
    await start_data(session)
    long_part = _head(probe, "D-03b") + b"z" * 100_000 + b"\r\n"
    early = await session.send(long_part, verb="DATA_END")
    got = await session.extra(early)
    if got:
        closed = session.closed or await session.wait_closed(0.05)
        findings.append(
            Finding(
                Verdict.FAIL,
                f"a reply ({early.outcome}) came before the end of data"
                + (", and the server closed the connection" if closed else ""),
                early.lines(),
                rule=sentence("no-close-before-quit" if closed else "exactly-one-reply"),
            )
        )
        await session.close(polite=False)
        return worst(findings)
    end = await session.send(b".\r\n", verb="DATA_END", replies=1)
    if end.code is not None and end.code >= 400:
        # Refusing the overlong line after the final dot is what 4.5.3.1.9 allows (a policy or size reply).
        findings.append(passed(f"the overlong line was refused after the final dot ({end.code})", end))
    else:
        findings.append(check_code(probe, end, 250, reason="an overlong line is refused only after '.'"))
    noop = await session.cmd("NOOP")
    extra = await session.extra(noop)
    if noop.code != 250 or extra:
        findings.append(
            Finding(Verdict.FAIL, f"after the long line NOOP got {noop.outcome}: out of sync", noop.lines())
        )
    await session.close()
    return worst(findings)


async def big_message(probe: Probe) -> Finding:
    session = await probe.connect()
    await start_data(session)
    head = test_message(probe, "D-04", body="").encode()
    line = b"m" * 78 + b"\r\n"
    body = line * ((65_536 - len(head)) // len(line) + 1)
    message = (head + body)[: 65_536 - 2] + b"\r\n"
    end = await send_body(session, encode_data(message))
    await session.close()
    return check_code(probe, end, 250, reason=f"a message of {len(message)} octets must be accepted")


def _smuggled_part(probe: Probe, tag: str) -> bytes:
    rcpt = (probe.options.rcpt or "postmaster").encode()
    return (
        b"MAIL FROM:<smuggled@victim.example>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n"
        b"Subject: SMUGGLED " + tag.encode() + b"\r\n\r\nx\r\n.\r\n"
    )


#: How the smuggled part travels: with the bare end-of-data in one write, or in a second write after a pause.
#: A vulnerable server that ends DATA at the bare sequence and throws away what it read ahead passes
#: a reply-counting probe in the first mode; the pause in the second makes it answer early.
WRITE_MODES = ("same write", "second write")


async def _smuggle_once(probe: Probe, terminator: bytes, label: str, mode: str) -> Finding:
    """One smuggling attempt on its own session; judged from replies and, with an oracle, from deliveries."""
    tag = f"{probe.check.id}-{secrets.token_hex(4)}"
    what = f"{label} ({mode})"
    before = delivered_count(probe)
    session = await probe.connect()
    await start_data(session)
    first = _head(probe, tag) + b"hello" + terminator
    inner = _smuggled_part(probe, tag)
    if mode == "same write":
        end = await send_body(session, first + inner)
        await session.extra(end)
    else:
        end = await session.send(first, verb="DATA_END")
        early = await session.extra(end, wait=max(probe.options.quiet_wait, 0.3))
        if early:
            # The server answered before the real end of data: it ended DATA at the bare sequence.
            await session.close(polite=False)
            return Finding(
                Verdict.FAIL, f"{what}: the server ended DATA at the bare sequence ({end.outcome})", end.lines()
            )
        await session.send(inner, verb="DATA_END")
        await session.read(end, 1)
        await session.extra(end)
    timed_out = end.timed_out
    await session.close(polite=not timed_out)
    codes = end.codes
    if len(codes) > 1:
        return Finding(
            Verdict.FAIL, f"{what} ended DATA: the embedded commands were answered ({end.outcome})", end.lines()
        )
    if not codes:
        if timed_out:
            # Out of step after a timeout: judge only what was seen (no reply), never a late one.
            return Finding(Verdict.INFO, f"{what}: no reply before the timeout; session closed", end.lines())
        return Finding(probe.check.failing_verdict, f"{what}: {end.outcome}", end.lines())
    code = codes[0]
    stored = await _settled(probe, tag.encode(), before) if code < 400 else None
    if stored is not None:
        if any(b"hello" not in m for m in stored):
            return Finding(Verdict.FAIL, f"{what}: a second, smuggled message was stored", end.lines())
        cut = [m for m in stored if b"hello" in m and b"SMUGGLED" not in m]
        if code < 400 and cut:
            return Finding(
                Verdict.FAIL,
                f"{what}: the stored message ends at the bare sequence (what followed was dropped or read as commands)",
                [*end.lines(), f"stored tail: {cut[0][-80:]!r}"],
            )
    if code == 250:
        strategy = "kept as data or normalised"
    elif code >= 400:
        strategy = f"rejected ({code})"
    else:
        return Finding(probe.check.failing_verdict, f"{what}: unexpected reply {code}", end.lines())
    return Finding(Verdict.PASS, f"{what}: {strategy}", end.lines())


async def _smuggling(probe: Probe, variants: tuple[tuple[bytes, str], ...]) -> Finding:
    findings = [
        await _smuggle_once(probe, terminator, label, mode) for terminator, label in variants for mode in WRITE_MODES
    ]
    found = worst(findings)
    if found.verdict is Verdict.PASS:
        found.reason = "; ".join(f.reason for f in findings)
    return found


async def lf_dot_lf(probe: Probe) -> Finding:
    return await _smuggling(probe, ((b"\n.\n", "<LF>.<LF>"),))


SMUGGLING_VARIANTS: tuple[tuple[bytes, str], ...] = (
    (b"\n.\r\n", "<LF>.<CR><LF>"),
    (b"\r\n.\n", "<CR><LF>.<LF>"),
    (b"\n.\r", "<LF>.<CR>"),
    (b"\r.\n", "<CR>.<LF>"),
    (b"\r.\r", "<CR>.<CR>"),
    (b"\r.\r\n", "<CR>.<CR><LF>"),
    (b"\r\n.\r", "<CR><LF>.<CR>"),
    (b"\r\n\x00.\r\n", "<CR><LF><NUL>.<CR><LF>"),
)


async def smuggling_variants(probe: Probe) -> Finding:
    return await _smuggling(probe, SMUGGLING_VARIANTS)


async def bare_line_ends(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    for data, label in ((b"NOOP\nNOOP\r\n", "NOOP<LF>NOOP<CR><LF>"), (b"NOOP\rNOOP\r\n", "NOOP<CR>NOOP<CR><LF>")):
        ex = await session.send(data, verb="NOOP", replies=1)
        await session.extra(ex)
        if len(ex.replies) > 1:
            findings.append(
                Finding(
                    Verdict.FAIL,
                    f"{label} got {len(ex.replies)} replies: a bare line end was taken as the end of a command",
                    ex.lines(),
                )
            )
        elif ex.code is None:
            findings.append(Finding(Verdict.FAIL, f"{label}: {ex.outcome}", ex.lines()))
        else:
            findings.append(passed(f"{label}: one reply ({ex.code})", ex))
        if session.closed:
            break
    await session.close()
    return worst(findings)


async def irregular_bytes(probe: Probe) -> Finding:
    findings: list[Finding] = []
    session = await probe.connect()
    tag = f"D-08-{secrets.token_hex(4)}"
    before = delivered_count(probe)
    await start_data(session)
    end = await send_body(session, _head(probe, tag) + b"a\nb\r\n.\r\n")
    await session.extra(end)
    if len(end.replies) > 1:
        findings.append(Finding(Verdict.FAIL, "a bare LF in the body broke the message up", end.lines()))
    elif end.code is None:
        findings.append(Finding(Verdict.FAIL, f"bare LF in the body: {end.outcome}", end.lines()))
    else:
        stored = await _settled(probe, tag.encode(), before)
        how = "rejected" if end.code >= 400 else "accepted"
        if stored:
            how += ", kept as a bare LF" if b"a\nb" in stored[0] else ", normalised"
        findings.append(Finding(Verdict.PASS, f"bare LF in a body line: {how} ({end.code})", end.lines()))
    if session.closed:
        session = await probe.connect()
    tag = f"D-08-8bit-{secrets.token_hex(4)}"
    before = delivered_count(probe)
    await start_data(session)
    early = await session.send(_head(probe, tag) + bytes(range(0x80, 0x100)) + b"\r\n", verb="DATA_END")
    got = await session.extra(early)
    if got:
        findings.append(
            Finding(Verdict.FAIL, f"8-bit data got a reply ({early.outcome}) before the end of data", early.lines())
        )
        await session.close(polite=False)
        return worst(findings)
    end = await session.send(b".\r\n", verb="DATA_END", replies=1)
    if end.code is None:
        findings.append(Finding(Verdict.FAIL, f"8-bit data: {end.outcome}", end.lines()))
    else:
        stored = await _settled(probe, tag.encode(), before)
        how = "rejected" if end.code >= 400 else "accepted"
        if stored:
            high = bytes(range(0x80, 0x100))
            cleared = bytes(b & 0x7F for b in high)
            how += ", stored intact" if high in stored[0] else ", high bit cleared" if cleared in stored[0] else ""
        findings.append(Finding(Verdict.PASS, f"8-bit octets without BODY=8BITMIME: {how} ({end.code})", end.lines()))
        noop = await session.cmd("NOOP")
        extra = await session.extra(noop)
        if noop.code != 250 or extra:
            findings.append(
                Finding(Verdict.FAIL, f"after the 8-bit message NOOP got {noop.outcome}: out of sync", noop.lines())
            )
    await session.close()
    found = worst(findings)
    if found.verdict is Verdict.PASS:
        found.reason = "; ".join(f.reason for f in findings)
    return found


CHECKS = (
    Check(
        "D-01",
        "Basic transaction and trace header",
        AREA,
        Level.MUST,
        "4.1.1.4, 4.4",
        needs=RCPT_SINK,
        script=trace_header,
    ),
    Check("D-02", "Dot-stuffing transparency", AREA, Level.MUST, "4.5.2", needs=RCPT_SINK, script=dot_stuffing),
    Check("D-03", "Text-line length", AREA, Level.MUST, "4.5.3.1.6, 4.5.3.1.9", needs=RCPT, script=line_length),
    Check("D-04", "Message of 64 KiB", AREA, Level.MUST, "4.5.3.1.7", needs=RCPT, script=big_message),
    Check(
        "D-05",
        "<LF>.<LF> must not end DATA (SMTP smuggling)",
        AREA,
        Level.MUST,
        "4.1.1.4, 2.3.8; CVE-2023-51764/51765/51766",
        needs=RCPT_SINK,
        script=lf_dot_lf,
    ),
    Check("D-06", "Smuggling variants", AREA, Level.MUST, "2.3.8, 4.1.1.4", needs=RCPT, script=smuggling_variants),
    Check("D-07", "Bare CR or LF in command lines", AREA, Level.MUST, "2.3.8", script=bare_line_ends),
    Check("D-08", "Irregular content bytes", AREA, Level.MUST, "2.3.8, 2.4", needs=RCPT_SINK, script=irregular_bytes),
)
