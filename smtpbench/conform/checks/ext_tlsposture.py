"""TLS as MTAs see it: the certificate (T-07) and the protocol versions accepted (T-08).

Every other check uses TLS opportunistically (unverified unless ``--ca-file``),
as MTAs do between each other on port 25; the certificate's problems are
reported here once.  On port 25 they are ``info`` (RFC 7435 opportunistic
security: an MX with a self-signed certificate is the common case); on the
submission ports, or when ``--ca-file`` asks for verification, ``warn``.
"""

from __future__ import annotations

import ssl
import warnings

from smtpbench.conform.checks.ext_common import SUBMISSION_PORTS, handshake, implicit_tls, skip, tls_version
from smtpbench.conform.model import Check, Finding, Level, Verdict
from smtpbench.conform.probe import CheckAborted, Exchange, Probe, Session

AREA = "starttls"

#: (version, label) tried by T-08, oldest first.
VERSIONS: tuple[tuple[ssl.TLSVersion, str], ...] = (
    (ssl.TLSVersion.TLSv1, "TLS 1.0"),
    (ssl.TLSVersion.TLSv1_1, "TLS 1.1"),
    (ssl.TLSVersion.TLSv1_2, "TLS 1.2"),
    (ssl.TLSVersion.TLSv1_3, "TLS 1.3"),
)
DEPRECATED = frozenset({"TLS 1.0", "TLS 1.1"})
#: RSA/DSA keys below this many bits are reported as weak.
WEAK_BITS = 2048


async def _tls_start(probe: Probe, context: ssl.SSLContext) -> tuple[Session, Exchange | None, str | None]:
    """A fresh session taken into TLS with ``context``: STARTTLS after EHLO, or at once for implicit TLS.

    Returns the session, the STARTTLS exchange (``None`` for implicit TLS) and
    why the handshake failed (``None`` when it worked).  Raises
    :class:`CheckAborted` when the server offers no STARTTLS.
    """
    implicit = probe.options.tls == "implicit"
    session = await probe.open(plain=True)
    if implicit:
        failure = await handshake(session, context)
        if failure is None:
            # The greeting comes inside TLS; left unread, it would be taken for an extra reply to QUIT (G-01).
            await session.read_greeting()
        return session, None, failure
    greet = await session.read_greeting()
    if greet.code != 220:
        raise CheckAborted(f"greeting was {greet.outcome}, not 220")
    ehlo = await session.ehlo()
    if "STARTTLS" not in session.extensions:
        raise CheckAborted(f"STARTTLS is not advertised (EHLO {ehlo.outcome})")
    ex = await session.cmd("STARTTLS")
    if ex.code != 220:
        return session, ex, f"STARTTLS got {ex.outcome}"
    return session, ex, await handshake(session, context)


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _key_note(session: Session) -> str:
    """``"; weak key (RSA 1024 bits)"`` when the peer key is small (needs ``cryptography``; else ``""``)."""
    stream = session.conn.stream
    getpeercert = getattr(stream, "getpeercert", None)
    der = getpeercert(binary_form=True) if callable(getpeercert) else None
    if not der:
        return ""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import dsa, rsa
    except ImportError:  # optional: the key size is reported only where cryptography is installed
        return ""
    key = x509.load_der_x509_certificate(der).public_key()
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey) and key.key_size < WEAK_BITS:
        return f"; weak key ({type(key).__name__.removeprefix('_')[:3].upper()} {key.key_size} bits)"
    return ""


async def certificate(probe: Probe) -> Finding:
    o = probe.options
    if o.tls != "implicit" and (why := implicit_tls(probe)) is not None:
        return why
    try:
        session, ex, failure = await _tls_start(probe, ssl.create_default_context(cafile=o.ca_file))
    except CheckAborted as exc:
        return skip(str(exc))
    shown = ex.lines() if ex is not None else []
    if ex is not None and ex.code != 220:
        await session.close()
        return skip(failure or "STARTTLS refused")
    if failure is None:
        note = _key_note(session)
        await session.close()
        trust = f"--ca-file {o.ca_file}" if o.ca_file else "the system trust store"
        if note:
            return Finding(Verdict.WARN, f"certificate verifies against {trust}{note}", shown)
        return Finding(Verdict.PASS, f"certificate verifies against {trust} for {o.host}", shown)
    # Tell a certificate problem from a TLS stack that does not work at all.
    again, ex2, broken = await _tls_start(probe, _unverified())
    note = _key_note(again) if broken is None else ""
    await again.close()
    if broken is not None:
        return Finding(Verdict.INFO, f"no TLS handshake at all: {broken} (see T-01)", shown)
    problem = failure.split(":", 1)[-1].strip()
    submission = o.port in SUBMISSION_PORTS or o.tls == "implicit"
    verdict = Verdict.WARN if submission or o.ca_file else Verdict.INFO
    where = (
        "asked for with --ca-file"
        if o.ca_file
        else f"submission port {o.port}"
        if submission
        else f"port {o.port}: opportunistic TLS, recorded only"
    )
    return Finding(verdict, f"certificate does not verify ({problem}){note}; {where}", shown)


def _version_context(version: ssl.TLSVersion) -> ssl.SSLContext | None:
    """An unverified client context offering exactly ``version``, or ``None`` when the local library cannot."""
    ctx = _unverified()
    try:
        with warnings.catch_warnings():
            # Offering TLS 1.0/1.1 is deprecated, which is exactly what this probe wants to find out about.
            warnings.simplefilter("ignore", DeprecationWarning)
            if version < ssl.TLSVersion.TLSv1_2:
                # Old versions need the old ciphers and security level 0 in OpenSSL 3.
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = version
            ctx.maximum_version = version
    except (ValueError, ssl.SSLError):
        return None
    return ctx


async def versions(probe: Probe) -> Finding:
    accepted: list[str] = []
    refused: list[str] = []
    untestable: list[str] = []
    evidence: list[str] = []
    for version, label in VERSIONS:
        ctx = _version_context(version)
        if ctx is None:
            untestable.append(label)
            continue
        try:
            session, ex, failure = await _tls_start(probe, ctx)
        except CheckAborted as exc:
            return skip(str(exc))
        if ex is not None and ex.code != 220:
            await session.close()
            return skip(failure or "STARTTLS refused")
        if failure is None:
            accepted.append(label)
            evidence.append(f"# {label}: accepted ({tls_version(session)})")
        elif "NO_PROTOCOLS_AVAILABLE" in failure.upper() or "NO PROTOCOLS AVAILABLE" in failure.upper():
            untestable.append(label)
        else:
            refused.append(label)
            evidence.append(f"# {label}: refused ({failure[:120]})")
        await session.close(polite=failure is None)
    tail = f"; not testable with the local TLS library: {', '.join(untestable)}" if untestable else ""
    if not accepted:
        return Finding(
            Verdict.INFO, f"no protocol version accepted ({', '.join(refused) or 'none tried'}){tail}", evidence
        )
    old = [v for v in accepted if v in DEPRECATED]
    if old:
        return Finding(
            Verdict.WARN, f"deprecated {' and '.join(old)} accepted (accepted: {', '.join(accepted)}){tail}", evidence
        )
    return Finding(
        Verdict.PASS, f"accepted: {', '.join(accepted)}; refused: {', '.join(refused) or 'none'}{tail}", evidence
    )


CHECKS = (
    Check("T-07", "TLS certificate", AREA, Level.SHOULD, "RFC 7435, RFC 8314 [k]", script=certificate, start="none"),
    Check("T-08", "TLS protocol versions", AREA, Level.SHOULD, "RFC 8996 [k]", script=versions, start="none"),
)
