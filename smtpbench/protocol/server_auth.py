"""The server role's security commands: STARTTLS (RFC 3207) and AUTH (RFC 4954).

Mechanisms: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-256
(RFC 5802/7677, 4096 iterations, a salt per user name) and, with a
configured bearer token, XOAUTH2 and OAUTHBEARER (RFC 7628).

STARTTLS only *asks* for the handshake (``tls_requested``); the I/O layer
performs it and calls :meth:`AuthMixin.tls_started`, which restarts the
session as RFC 3207 4.2 requires.  AUTH is a small SASL state machine: the
input mode ``AUTH`` routes the next line to :meth:`AuthMixin.auth_response`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
from base64 import b64decode

from smtpbench.protocol import sasl
from smtpbench.protocol.server_state import (
    AUTH,
    CMD,
    R_NEED_EHLO,
    R_NEED_TLS,
    R_NOT_IMPL,
    ServerState,
)

R_AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
R_AUTH_FAIL = b"535 5.7.8 Error: authentication credentials invalid\r\n"
R_AUTH_CANCEL = b"501 5.0.0 Authentication cancelled\r\n"
R_AUTH_B64 = b"501 5.5.2 Error: invalid base64 data\r\n"
#: The JSON error of a refused bearer token (RFC 7628 3.2.2), base64, sent in a 334 before the 535.
OAUTH_ERROR = sasl.b64('{"status":"invalid_token","schemes":"bearer"}')


def advertised(token: bool) -> str:
    """The mechanisms an AUTH EHLO keyword lists (the bearer ones only with a token configured)."""
    return "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256" + (" XOAUTH2 OAUTHBEARER" if token else "")


def _scram_salt(user: str) -> bytes:
    # Stable per user, so the client's salted-password cache works as against a real user database.
    return hashlib.sha256(b"smtpbench-sink-salt:" + user.encode()).digest()[:16]


class AuthMixin(ServerState):
    """STARTTLS and AUTH for :class:`~smtpbench.protocol.server.ServerConnection`."""

    def starttls(self, arg: str) -> None:
        """Answer ``STARTTLS``: 220 and ``tls_requested``, or say why not."""
        quirks = self.quirks
        if not self.config.starttls:
            self.out.append(R_NOT_IMPL)
        elif self.tls:
            self.out.append(b"503 5.5.1 Error: TLS already active\r\n")
        elif arg.strip() and not (quirks and "T-02" in quirks):
            self.out.append(b"501 5.5.4 Syntax: STARTTLS (no parameters)\r\n")
        else:
            self.out.append(b"220 2.0.0 Ready to start TLS\r\n")
            self.tls_requested = True

    def tls_started(self) -> bytes:
        """The handshake succeeded: forget the plaintext session (RFC 3207 4.2).

        Returns the plaintext input that followed STARTTLS, to be fed again
        only under the T-04 quirk (CVE-2011-0411); otherwise it is dropped
        and ``b""`` is returned.
        """
        self.tls_requested = False
        self.tls = True
        rest, self.tls_rest = self.tls_rest, b""
        if not (self.quirks and "T-03" in self.quirks):
            self.greeted = None
            self.helo_name = ""
        self.auth_user = None
        self.reset_transaction()
        return rest if self.quirks and "T-04" in self.quirks else b""

    def auth_offered(self) -> bool:
        """True when AUTH is advertised and accepted now (users exist; TLS is on or not required)."""
        cfg = self.config
        if not cfg.auth_users and not cfg.auth_token:
            return False
        return self.tls or cfg.allow_plain_auth_without_tls or bool(self.quirks and "U-01" in self.quirks)

    def auth(self, arg: str) -> None:
        """Answer ``AUTH mechanism [initial-response]``."""
        quirks = self.quirks
        out = self.out
        if not self.config.auth_users and not self.config.auth_token:
            out.append(R_NOT_IMPL)
            return
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if not self.auth_offered():
            out.append(R_NEED_TLS)
            return
        if self.auth_user is not None and not (quirks and "U-04" in quirks):
            out.append(b"503 5.5.1 Error: already authenticated\r\n")
            return
        if self.mail_from is not None:
            out.append(b"503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n")
            return
        parts = arg.split()
        if not parts or len(parts) > 2:
            out.append(b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n")
            return
        mech = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mech == "PLAIN":
            if initial is None:
                self.auth_state = ("PLAIN", "")
                self.mode = AUTH
                out.append(b"334 \r\n")
            else:
                self._auth_step("PLAIN", "", initial)
        elif mech == "LOGIN":
            if initial is None:
                self.auth_state = ("LOGIN-USER", "")
                self.mode = AUTH
                out.append(b"334 VXNlcm5hbWU6\r\n")
            else:
                self._auth_step("LOGIN-USER", "", initial)
        elif mech == "CRAM-MD5" and initial is None:
            challenge = f"<{secrets.token_hex(8)}@{self.config.hostname}>"
            self.auth_state = ("CRAM-MD5", challenge)
            self.mode = AUTH
            out.append(f"334 {sasl.b64(challenge)}\r\n".encode())
        elif mech == "SCRAM-SHA-256" and initial is not None:
            self._scram_first(initial)
        elif mech in sasl.TOKEN_MECHANISMS and initial is not None and self.config.auth_token:
            self._auth_step(mech, "", initial)
        else:
            out.append(b"504 5.5.4 Error: unsupported authentication mechanism\r\n")

    def auth_response(self, line: bytes) -> None:
        """Take the client's line answering a 334."""
        state = self.auth_state
        assert state is not None
        self.mode = CMD
        self.auth_state = None
        text = line.decode("ascii", "replace").strip()
        if text == "*":
            if self.quirks and "U-02" in self.quirks:
                self._auth_failed()
            else:
                self.out.append(R_AUTH_CANCEL)
            return
        self._auth_step(state[0], state[1], text)

    def _auth_step(self, step: str, user: str, response: str) -> None:
        try:
            decoded = b"" if response == "=" else b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            self.out.append(R_AUTH_B64)
            return
        if step == "LOGIN-USER":
            self.auth_state = ("LOGIN-PASS", decoded.decode("utf-8", "replace"))
            self.mode = AUTH
            self.out.append(b"334 UGFzc3dvcmQ6\r\n")
            return
        if step == "SCRAM-FINAL":
            self._scram_final(user, decoded.decode("utf-8", "replace"))
            return
        if step == "SCRAM-DONE":  # the client's empty answer to the server-final message
            self._auth_ok(user)
            return
        if step == "OAUTH-ERROR":
            self._auth_failed()
            return
        if step in sasl.TOKEN_MECHANISMS:
            self._bearer(step, decoded.decode("utf-8", "replace"))
            return
        if step == "CRAM-MD5":
            name, _, digest = decoded.decode("utf-8", "replace").rpartition(" ")
            expected = self.config.auth_users.get(name)
            good = expected is not None and hmac.compare_digest(digest, sasl.cram_md5_digest(expected, user.encode()))
            self._auth_ok(name) if good else self._auth_failed()
            return
        if step == "PLAIN":
            fields = decoded.split(b"\0")
            if len(fields) != 3:
                self.out.append(b"501 5.5.2 Error: malformed PLAIN response\r\n")
                return
            user = fields[1].decode("utf-8", "replace")
            password = fields[2].decode("utf-8", "replace")
        else:
            password = decoded.decode("utf-8", "replace")
        expected = self.config.auth_users.get(user)
        if expected is not None and expected == password:
            self._auth_ok(user)
        else:
            self._auth_failed()

    def _auth_ok(self, user: str) -> None:
        self.auth_user = user
        self.stats.auth_successes += 1
        self.out.append(R_AUTH_OK)

    def _bearer(self, mech: str, text: str) -> None:
        """Check an XOAUTH2 / OAUTHBEARER response: any user, the configured token."""
        fields = text.split("\x01")
        if mech == "OAUTHBEARER":
            head = sasl.scram_attrs(fields[0].removeprefix("n,").removeprefix("y,"))
            user = head.get("a", "")
        else:
            user = next((f[5:] for f in fields if f.startswith("user=")), "")
        token = next((f[12:] for f in fields if f.startswith("auth=Bearer ")), "")
        if user and hmac.compare_digest(token.encode(), self.config.auth_token.encode()):
            self._auth_ok(user)
            return
        # RFC 7628 3.2.2: the error goes in a 334; the client answers (^A or empty), then 535.
        self.auth_state = ("OAUTH-ERROR", "")
        self.mode = AUTH
        self.out.append(f"334 {OAUTH_ERROR}\r\n".encode())

    def _scram_first(self, initial: str) -> None:
        try:
            text = b64decode(initial, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            self.out.append(R_AUTH_B64)
            return
        if not text.startswith("n,,"):  # no channel binding, no authzid: all the sink speaks
            self.out.append(b"501 5.5.2 Error: unsupported SCRAM gs2 header\r\n")
            return
        bare = text[3:]
        attrs = sasl.scram_attrs(bare)
        if not attrs.get("n") or not attrs.get("r"):
            self.out.append(b"501 5.5.2 Error: malformed SCRAM client-first-message\r\n")
            return
        user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        server_first = (
            f"r={attrs['r']}{secrets.token_urlsafe(12)},s={sasl.b64(_scram_salt(user))},i={sasl.SCRAM_ITERATIONS}"
        )
        self.auth_state = ("SCRAM-FINAL", f"{bare}\0{server_first}")
        self.mode = AUTH
        self.out.append(f"334 {sasl.b64(server_first)}\r\n".encode())

    def _scram_final(self, state: str, client_final: str) -> None:
        bare, server_first = state.split("\0", 1)
        user = sasl.scram_attrs(bare)["n"].replace("=2C", ",").replace("=3D", "=")
        password = self.config.auth_users.get(user)
        without_proof, _, proof_b64 = client_final.rpartition(",p=")
        attrs = sasl.scram_attrs(without_proof)
        if password is None or attrs.get("r") != sasl.scram_attrs(server_first)["r"] or attrs.get("c") != "biws":
            self._auth_failed()
            return
        salted = sasl.salted_password(password, _scram_salt(user), sasl.SCRAM_ITERATIONS)
        _, stored_key, server_key = sasl.scram_keys(salted)
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        try:
            proof = b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            proof = b""
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if len(proof) != len(signature) or not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            self._auth_failed()
            return
        server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        self.auth_state = ("SCRAM-DONE", user)
        self.mode = AUTH
        self.out.append(f"334 {sasl.b64('v=' + sasl.b64(server_signature))}\r\n".encode())

    def _auth_failed(self) -> None:
        self.stats.auth_failures += 1
        self.out.append(R_AUTH_FAIL)
        if self.quirks and "U-03" in self.quirks:
            self.out.append(f"421 4.7.0 {self.config.hostname} Error: too many authentication failures\r\n".encode())
            self.closing = True
