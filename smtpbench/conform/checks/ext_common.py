"""Helpers shared by the extension checks (sections 10-19); defines no checks itself.

What the framework's :class:`~smtpbench.conform.probe.Session` does not
offer and several extension checks need: a plaintext session even when the
run upgrades every session (``--starttls``), a TLS handshake whose failure is
a finding rather than an abort, SASL payloads that never reach a report, and
the "undo whatever this command started" clean-ups.
"""

from __future__ import annotations

import re
import ssl

from smtpbench.conform.model import Finding, Verdict
from smtpbench.conform.probe import CheckAborted, Exchange, Probe, Session
from smtpbench.net.errors import classify
from smtpbench.net.tls import client_context
from smtpbench.protocol.replies import ReplyParser
from smtpbench.protocol.sasl import b64, plain_response

#: A SASL challenge or response: base64 and nothing else (RFC 4954 4).
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

#: Ports where the submission policies (TLS or AUTH required) are the norm.
SUBMISSION_PORTS = frozenset({587, 465})


def skip(reason: str) -> Finding:
    """A ``skip`` finding: the check does not apply to this server or run."""
    return Finding(Verdict.SKIP, reason)


def is_2yz(ex: Exchange) -> bool:
    """True when the (first) reply of ``ex`` is a completion reply."""
    return ex.code is not None and 200 <= ex.code < 300


async def plaintext_session(probe: Probe) -> Session:
    """A session after greeting and EHLO, never upgraded to TLS (whatever ``--starttls`` says).

    Raises :class:`CheckAborted` when the greeting is not 220 or EHLO is not
    250.  Callers must not use it with implicit TLS (see :func:`implicit_tls`).
    """
    session = await probe.connect("greeting")
    ex = await session.ehlo()
    if ex.code != 250:
        raise CheckAborted(f"EHLO got {ex.outcome}")
    return session


def implicit_tls(probe: Probe) -> Finding | None:
    """A ``skip`` finding when the run uses implicit TLS (no plaintext phase to probe), else ``None``."""
    if probe.options.tls == "implicit":
        return skip("the session is TLS from the first octet (--tls): there is no STARTTLS phase to probe")
    return None


async def starttls_session(probe: Probe) -> Session | Finding:
    """A plaintext session after EHLO that offers STARTTLS, or the ``skip`` finding saying why there is none.

    The STARTTLS checks judge the plaintext EHLO themselves rather than the
    run's discovery: with ``--starttls`` discovery reports the keywords seen
    inside TLS, where STARTTLS is (rightly) no longer offered.
    """
    if (why := implicit_tls(probe)) is not None:
        return why
    session = await plaintext_session(probe)
    if "STARTTLS" not in session.extensions:
        await session.close()
        return skip("STARTTLS is not advertised")
    return session


def tls_context(probe: Probe, verify: bool = True) -> ssl.SSLContext:
    """The client TLS context of this run: opportunistic (unverified) unless ``--ca-file`` asks for verification.

    ``verify`` false forces an unverified context.  Certificate problems are
    reported once, by T-07, so that they never abort a protocol check.
    """
    o = probe.options
    return client_context(o.ca_file, o.insecure or not verify or not o.ca_file)


async def handshake(session: Session, context: ssl.SSLContext) -> str | None:
    """Run the TLS handshake on ``session`` after a 220 to STARTTLS; return why it failed, or ``None``.

    Replies and partial lines read in plaintext are discarded first, so that
    nothing received before TLS is ever taken for a protected reply (RFC 3207
    4.2).  On failure the session is marked closed.
    """
    session.pending.clear()
    session.parser = ReplyParser()
    try:
        await session.conn.start_tls(context, session.probe.options.host, session.timeout)
    except Exception as exc:  # ssl, stream and timeout errors alike are the finding
        session.closed = True
        return f"{classify(exc)}: {exc}"
    return None


def tls_version(session: Session) -> str:
    """The negotiated protocol version of a TLS session (``"?"`` when it cannot be told)."""
    version = getattr(session.conn.stream, "version", None)
    try:
        return str(version()) if callable(version) else "?"
    except (AttributeError, ValueError):
        return "?"


def mechanisms(extensions: dict[str, str]) -> set[str]:
    """The SASL mechanisms of an EHLO ``AUTH`` line, upper-cased (also the old ``AUTH=`` form)."""
    words = set(extensions.get("AUTH", "").upper().split())
    for keyword, params in extensions.items():
        if keyword.startswith("AUTH="):
            words |= {keyword[5:], *params.upper().split()}
    return words


async def authenticate(session: Session, user: str, password: str, mechs: set[str]) -> Exchange:
    """Authenticate with PLAIN (preferred) or LOGIN; every payload is written as a secret.

    Returns the exchange holding the final reply (235 on success).  Raises
    :class:`CheckAborted` when the server offers neither mechanism.
    """
    if "PLAIN" in mechs or not mechs:
        return await session.cmd(f"AUTH PLAIN {plain_response(user, password)}", secret=True)
    if "LOGIN" in mechs:
        ex = await session.cmd("AUTH LOGIN")
        if ex.code != 334:
            return ex
        ex = await session.cmd(b64(user), secret=True, verb="AUTH_RESPONSE")
        if ex.code != 334:
            return ex
        return await session.cmd(b64(password), secret=True, verb="AUTH_RESPONSE")
    raise CheckAborted(f"the server offers neither PLAIN nor LOGIN (AUTH {' '.join(sorted(mechs))})")


async def cancel_auth(session: Session, ex: Exchange) -> Exchange | None:
    """If ``ex`` left a SASL exchange open (334), cancel it with ``*`` and return that exchange."""
    if ex.code == 334 and not session.closed:
        return await session.cmd("*", verb="AUTH_RESPONSE")
    return None


async def rset(session: Session) -> None:
    """Send RSET to end whatever transaction is open (its reply is not judged)."""
    if not session.closed:
        await session.cmd("RSET")


async def mail_then_rset(session: Session, params: str = "") -> Exchange:
    """``MAIL FROM:<sender> [params]``, then RSET when it opened a transaction."""
    ex = await session.cmd(f"MAIL FROM:<{{sender}}>{' ' + params if params else ''}")
    if ex.code is not None and ex.code < 400:
        await rset(session)
    return ex


async def abandon_data(session: Session) -> None:
    """After an unwanted 354: drop the connection rather than risk delivering a message."""
    await session.close(polite=False)


def server_name(session: Session) -> str | None:
    """The domain the server names itself by: first word of the EHLO reply, else of the greeting."""
    for ex in session.exchanges:
        if ex.verb == "EHLO" and ex.reply is not None and ex.reply.code == 250:
            word = ex.reply.lines[0].split(" ", 1)[0]
            if word:
                return word
    if session.greeting is not None and session.greeting.lines:
        word = session.greeting.lines[0].split(" ", 1)[0]
        return word or None
    return None
