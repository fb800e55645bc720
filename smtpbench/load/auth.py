"""The AUTH opening step of a load session: any mechanism of :mod:`smtpbench.protocol.sasl`.

The mechanism's client is driven over the session's lockstep commands; the
account is the run's one account, or one drawn with the session's seeded
generator from a users file.  Every way AUTH can go wrong but a 421 (a
refusal, a server asking for too much, a SCRAM server that cannot prove it
knows the password) ends the session with the ``auth`` error kind.
"""

from __future__ import annotations

import random
from typing import Protocol

from smtpbench.net.errors import AuthFailed
from smtpbench.protocol import sasl
from smtpbench.protocol.replies import Reply


class AuthSettings(Protocol):
    """What AUTH needs of the run's session settings."""

    @property
    def auth_mechanism(self) -> str | None: ...  # noqa: D102

    @property
    def auth_credentials(self) -> tuple[tuple[str, str], ...]: ...  # noqa: D102


class AuthSession(Protocol):
    """What AUTH needs of a session (:class:`smtpbench.load.session.Session`, without importing it)."""

    @property
    def settings(self) -> AuthSettings: ...  # noqa: D102

    @property
    def rng(self) -> random.Random: ...  # noqa: D102

    async def command(self, verb: str, line: bytes, phase: str, timeout_key: str) -> Reply:
        """Send one command and await its reply."""
        ...


def account(s: AuthSession) -> tuple[str, str]:
    """The (user, secret) this session logs in with: the only one, or one drawn with the session's generator."""
    creds = s.settings.auth_credentials
    return creds[0] if len(creds) == 1 else creds[s.rng.randrange(len(creds))]


async def step_auth(s: AuthSession) -> None:
    """AUTH with the profile's mechanism; raises AuthFailed (kind ``auth``) unless the server says 235."""
    name = s.settings.auth_mechanism or "PLAIN"
    user, secret = account(s)
    mech = sasl.client(name, user, secret)
    first = mech.initial()
    line = f"AUTH {name} {first}" if first is not None else f"AUTH {name}"
    reply = await s.command("AUTH", f"{line}\r\n".encode(), "auth", "auth")
    try:
        while reply.code == 334:
            try:
                answer = mech.respond(reply.text)
            except sasl.SASLError:
                # RFC 4954 4: "*" cancels; the server's 501 is awaited so the session stays in step.
                await s.command("AUTH_RESPONSE", b"*\r\n", "auth", "auth")
                raise
            reply = await s.command("AUTH_RESPONSE", f"{answer}\r\n".encode(), "auth", "auth")
        if reply.code != 235:
            raise AuthFailed(f"AUTH {name} refused: {reply.code}", "auth")
        mech.finish(reply.text)
    except sasl.SASLError as exc:
        raise AuthFailed(f"AUTH {name} failed: {exc}", "auth") from None
