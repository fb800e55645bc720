"""The opening steps of a load session: connect, implicit TLS, banner, EHLO, STARTTLS, AUTH, extensions.

Each step is an ``async`` function over a :class:`~smtpbench.load.session.Session`;
:func:`opening_steps` chooses them once per run from the profile.  Steps that
bound themselves (connect, TLS handshake) run with the session deadline lifted
(see the deadline notes in :mod:`smtpbench.load.session`).
"""

from __future__ import annotations

import trio

from smtpbench.load.auth import step_auth
from smtpbench.load.extensions import HAS_CHUNKING, NO_CHUNKING, capabilities
from smtpbench.load.session import Session, Step, perf
from smtpbench.load.settings import SessionSettings
from smtpbench.load.tls_steps import handshake_done, step_keep_tls_session
from smtpbench.net.connection import SMTPConnection, connect_tcp
from smtpbench.net.errors import ReplyError, SessionError, SessionTimeout
from smtpbench.net.fdio import send_all
from smtpbench.protocol import commands, proxy
from smtpbench.protocol.lmtp import LMTPClientProtocol
from smtpbench.protocol.replies import ReplyParser
from smtpbench.protocol.state import ClientProtocol


async def step_connect(s: Session) -> None:
    """TCP connect to the address the engine resolved once, from the session's source address if any."""
    st = s.settings
    assert st.sockaddr is not None, "the target is resolved before the first session"
    s.disarm()
    s.phase = "connect"
    s.mark = perf()
    sources = st.sources
    source = sources[s.number % len(sources)] if sources else None
    try:
        with trio.fail_after(st.timeouts["connect"]):
            stream = await connect_tcp(st.family, st.sockaddr, source)
    except trio.TooSlowError:
        raise SessionTimeout(f"connect not done within {st.timeouts['connect']:g}s", "connect") from None
    s.conn = SMTPConnection(
        stream, (LMTPClientProtocol if st.lmtp else ClientProtocol)(ReplyParser(cache=st.reply_cache))
    )
    s.conn.raw_log = s.trace
    now = perf()
    s.recorder.record("connect", int((now - s.mark) * 1_000_000))
    s.mark = now


async def step_proxy(s: Session) -> None:
    """Send the session's PROXY protocol header right after connect (:mod:`smtpbench.load.proxy`); count its client."""
    st = s.settings
    assert s.conn is not None and st.proxy is not None and st.sockaddr is not None
    data, client = st.proxy.header(s.number, st.sockaddr)
    await send_all(s.conn.stream, data)
    if s.trace is not None:  # a readable line, not v2's binary block
        s.trace.append((">", proxy.describe(data)))
    tally = s.recorder.counters.proxy
    if tally is not None:
        tally.note(client)


async def step_implicit_tls(s: Session) -> None:
    """TLS handshake right after connect (SMTPS, port 465 style), offering a saved session when drawn to resume.

    Timed as ``tls.full`` or ``tls.resumed`` and counted (smtpbench.load.tls_sessions).
    """
    st = s.settings
    assert s.conn is not None and st.ssl_context is not None
    s.disarm()
    s.phase = "tls"
    offer = st.tls_sessions.draw(s.rng, s.recorder.counters.counts) if st.tls_sessions is not None else None
    name = st.host if st.sni is None else st.sni or None
    await s.conn.start_tls(st.ssl_context, name, st.timeouts["tls"], offer)
    now = perf()
    s.recorder.record(handshake_done(s, offer is not None), int((now - s.mark) * 1_000_000))
    s.mark = now


async def step_banner(s: Session) -> None:
    """Await the greeting; anything but 220 ends the session."""
    _, reply = await s.reply("banner", "banner")
    if reply.code != 220:
        raise ReplyError(f"greeting refused: {reply.code} {reply.text[:80]}", "banner", reply.code)


async def _hello(s: Session, phase: str) -> None:
    if s.settings.lmtp:  # RFC 2033 4.1: LHLO, and no HELO to fall back to
        reply = await s.command("LHLO", commands.lhlo(s.settings.helo), phase, "ehlo")
        if reply.code >= 400:
            raise ReplyError(f"LHLO refused: {reply.code} {reply.text[:80]}", phase, reply.code)
        return
    reply = await s.command("EHLO", commands.ehlo(s.settings.helo), phase, "ehlo")
    if reply.code in (500, 502):  # old server without EHLO: fall back (RFC 5321 3.2)
        reply = await s.command("HELO", commands.helo(s.settings.helo), phase, "ehlo")
    if reply.code >= 400:
        raise ReplyError(f"EHLO refused: {reply.code} {reply.text[:80]}", phase, reply.code)


async def step_ehlo(s: Session) -> None:
    """EHLO, falling back to HELO (LHLO in LMTP); decides whether to pipeline."""
    await _hello(s, "ehlo")
    assert s.conn is not None
    mode = s.settings.pipelining
    s.pipelined = mode == "on" or (mode == "auto" and "PIPELINING" in s.conn.protocol.extensions)


async def step_starttls(s: Session) -> None:
    """STARTTLS, handshake, and the EHLO again that RFC 3207 4.2 requires."""
    assert s.conn is not None and s.settings.ssl_context is not None
    reply = await s.command("STARTTLS", commands.STARTTLS, "starttls", "tls")
    if reply.code != 220:
        raise ReplyError(f"STARTTLS refused: {reply.code} {reply.text[:80]}", "starttls", reply.code)
    await step_implicit_tls(s)
    await step_ehlo(s)


class ChunkingUnsupported(SessionError):
    """``chunking = "on"`` but the server does not advertise CHUNKING (RFC 3030)."""

    kind = NO_CHUNKING


async def step_extensions(s: Session) -> None:
    """Note the server's extensions (the last EHLO's) and choose DATA or BDAT; ``chunking = "on"`` needs CHUNKING."""
    assert s.conn is not None
    s.caps = capabilities(s.conn.protocol.extensions)
    chunking = s.settings.chunking
    s.bdat = chunking == "on" or (chunking == "auto" and bool(s.caps & HAS_CHUNKING))
    if chunking == "on" and not s.caps & HAS_CHUNKING:
        await s.command("QUIT", commands.QUIT, "quit", "other")
        raise ChunkingUnsupported('chunking = "on" but the server does not advertise CHUNKING', "ehlo")


def opening_steps(settings: SessionSettings) -> list[Step]:
    """The session's opening steps for this profile, in order."""
    steps: list[Step] = [step_connect]
    if settings.proxy is not None:
        steps.append(step_proxy)
    if settings.tls == "implicit":
        steps.append(step_implicit_tls)
    steps += [step_banner, step_ehlo]
    if settings.tls == "starttls":
        steps.append(step_starttls)
    if settings.tls_sessions is not None:
        steps.append(step_keep_tls_session)
    if settings.auth_mechanism:
        steps.append(step_auth)
    steps.append(step_extensions)
    return steps
