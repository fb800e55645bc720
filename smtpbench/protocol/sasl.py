"""SASL for SMTP AUTH (RFC 4954), sans I/O: the client mechanisms and the math the server role shares.

The one place that encodes credentials for the wire: the load engine, the
conformance suite and ``smtpbench probe`` all build their AUTH payloads here.
A client mechanism (:func:`client`) is driven the same way by every caller::

    mech = client(name, user, secret)
    first = mech.initial()            # base64 initial response, or None
    # send "AUTH name [first]"; while the reply is 334: send mech.respond(reply text)
    mech.finish(reply_235_text)       # raises SASLError unless the server proved itself (SCRAM)

Mechanisms: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-256
(RFC 5802, 7677; no channel binding, no SASLprep beyond UTF-8), XOAUTH2
(Google's) and OAUTHBEARER (RFC 7628).  For the last two the secret is a
bearer token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from functools import lru_cache

#: The mechanisms smtpbench can authenticate with, in the order the probe picks among those offered.
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER")
#: Mechanisms whose secret is a bearer token, not a password.
TOKEN_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
SCRAM_ITERATIONS = 4096


class SASLError(Exception):
    """The server's side of an exchange is malformed or unproven (a wrong SCRAM signature)."""


def b64(text: str | bytes) -> str:
    """``text`` (UTF-8 encoded when a str), then base64."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def unb64(token: str) -> bytes:
    """Strict base64 decoding of a challenge; raises :class:`SASLError` when it is not base64."""
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("the server's challenge is not base64") from None


def plain_response(user: str, password: str) -> str:
    """The base64 PLAIN initial response for ``user``/``password`` (RFC 4616, empty authzid)."""
    return b64(f"\0{user}\0{password}")


def decode(token: str) -> str | None:
    """A base64 SASL token (a 334 challenge or a client response) as text; ``None`` when it is not base64."""
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def cram_md5_digest(password: str, challenge: bytes) -> str:
    """The hex HMAC-MD5 of ``challenge`` keyed with ``password`` (RFC 2195)."""
    return hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()


@lru_cache(maxsize=256)
def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword (PBKDF2-HMAC-SHA-256); cached, as real clients do, since it is the costly part."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def scram_keys(salted: bytes) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey) from a SaltedPassword (RFC 5802 3)."""
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def scram_attrs(message: str) -> dict[str, str]:
    """The ``a=value`` attributes of a SCRAM message (the first of each name)."""
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


def saslname(user: str) -> str:
    """``user`` escaped for a SCRAM ``n=`` attribute (RFC 5802 5.1)."""
    return user.replace("=", "=3D").replace(",", "=2C")


def xoauth2_response(user: str, token: str) -> str:
    """The base64 XOAUTH2 initial response."""
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def oauthbearer_response(user: str, token: str) -> str:
    """The base64 OAUTHBEARER initial response (RFC 7628 3.1, no host/port)."""
    return b64(f"n,a={saslname(user)},\x01auth=Bearer {token}\x01\x01")


class ClientMechanism:
    """One client side of one exchange (see the module notes for how it is driven)."""

    name = ""
    #: How many 334 challenges the mechanism answers; a server asking for more is cancelled.
    rounds = 1

    def __init__(self, user: str, secret: str) -> None:
        self.user = user
        self.secret = secret
        self.round = 0

    def initial(self) -> str | None:
        """The base64 initial response sent with AUTH, or None to wait for a 334."""
        return None

    def respond(self, challenge: str) -> str:
        """The base64 answer to a 334 carrying ``challenge``; raises SASLError when it cannot answer."""
        self.round += 1
        if self.round > self.rounds:
            raise SASLError(f"{self.name} takes {self.rounds} round(s); the server asked for more")
        return self._respond(challenge)

    def _respond(self, challenge: str) -> str:
        raise SASLError(f"{self.name} expects no challenge")

    def finish(self, text: str) -> None:
        """The server said 235 (with ``text``); raises SASLError unless the exchange is complete."""


class Plain(ClientMechanism):
    """RFC 4616, sent as the initial response."""

    name = "PLAIN"

    def initial(self) -> str | None:
        """The whole credential at once."""
        return plain_response(self.user, self.secret)

    def _respond(self, challenge: str) -> str:
        return plain_response(self.user, self.secret)  # a server that ignored the initial response


class Login(ClientMechanism):
    """The LOGIN mechanism: user, then password, each after a 334."""

    name = "LOGIN"
    rounds = 2

    def _respond(self, challenge: str) -> str:
        return b64(self.user if self.round == 1 else self.secret)


class CramMD5(ClientMechanism):
    """RFC 2195: ``user hex(HMAC-MD5(password, challenge))``."""

    name = "CRAM-MD5"

    def _respond(self, challenge: str) -> str:
        return b64(f"{self.user} {cram_md5_digest(self.secret, unb64(challenge))}")


class ScramSHA256(ClientMechanism):
    """RFC 5802/7677 client: nonce, salted password, proof, and the server's signature checked."""

    name = "SCRAM-SHA-256"
    rounds = 2

    def __init__(self, user: str, secret: str, nonce: str | None = None) -> None:
        super().__init__(user, secret)
        self.nonce = nonce or secrets.token_urlsafe(18)
        self.first_bare = f"n={saslname(user)},r={self.nonce}"
        self.server_signature: bytes | None = None
        self.verified = False

    def initial(self) -> str | None:
        """The client-first-message (gs2 header ``n,,``: no channel binding, no authzid)."""
        return b64("n,," + self.first_bare)

    def _respond(self, challenge: str) -> str:
        message = unb64(challenge).decode("utf-8", "replace")
        if self.round == 1:
            return self._final(message)
        self._verify(message)
        return ""  # the empty response after the server-final message (RFC 4954 4)

    def _final(self, server_first: str) -> str:
        attrs = scram_attrs(server_first)
        nonce, salt, count = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) <= len(self.nonce):
            raise SASLError("the server's nonce does not extend ours")
        if salt is None or not count.isdigit() or not 1 <= int(count) <= 10_000_000:
            raise SASLError("malformed server-first-message")
        salted = salted_password(self.secret, unb64(salt), int(count))
        client_key, stored_key, server_key = scram_keys(salted)
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        proof = bytes(a ^ b for a, b in zip(client_key, _hmac(stored_key, auth_message), strict=True))
        self.server_signature = _hmac(server_key, auth_message)
        return b64(f"{without_proof},p={b64(proof)}")

    def _verify(self, server_final: str) -> None:
        attrs = scram_attrs(server_final)
        if "e" in attrs:
            raise SASLError(f"the server reports {attrs['e'][:40]!r}")
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if self.server_signature is None or not hmac.compare_digest(signature, self.server_signature):
            raise SASLError("wrong server signature: the server does not know the password")
        self.verified = True

    def finish(self, text: str) -> None:
        """A 235 may carry the server-final message itself; either way it must have been verified."""
        if not self.verified and text.strip() and decode(text) is not None and self.server_signature:
            self._verify(unb64(text.split()[0]).decode("utf-8", "replace"))
        if not self.verified:
            raise SASLError("235 without a verified server signature")


class XOAuth2(ClientMechanism):
    """XOAUTH2: the token as initial response; after an error 334 (JSON), an empty answer."""

    name = "XOAUTH2"

    def initial(self) -> str | None:
        """``user=...^Aauth=Bearer ...^A^A``."""
        return xoauth2_response(self.user, self.secret)

    def _respond(self, challenge: str) -> str:
        return ""


class OAuthBearer(XOAuth2):
    """RFC 7628: like XOAUTH2 with a gs2 header; an error 334 is answered with ``^A`` (3.2.3)."""

    name = "OAUTHBEARER"

    def initial(self) -> str | None:
        """``n,a=user,^Aauth=Bearer ...^A^A``."""
        return oauthbearer_response(self.user, self.secret)

    def _respond(self, challenge: str) -> str:
        return b64("\x01")


_CLIENTS: dict[str, type[ClientMechanism]] = {
    cls.name: cls for cls in (Plain, Login, CramMD5, ScramSHA256, XOAuth2, OAuthBearer)
}


def client(mechanism: str, user: str, secret: str) -> ClientMechanism:
    """A fresh client for ``mechanism`` (one of :data:`MECHANISMS`, any case); KeyError otherwise."""
    return _CLIENTS[mechanism.upper()](user, secret)
