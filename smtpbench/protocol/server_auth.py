"""The server role's security commands: STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954, 4616).

STARTTLS only *asks* for the handshake (``tls_requested``); the I/O layer
performs it and calls :meth:`AuthMixin.tls_started`, which restarts the
session as RFC 3207 4.2 requires.  AUTH is a small SASL state machine: the
input mode ``AUTH`` routes the next line to :meth:`AuthMixin.auth_response`.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

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
        if not cfg.auth_users:
            return False
        return self.tls or cfg.allow_plain_auth_without_tls or bool(self.quirks and "U-01" in self.quirks)

    def auth(self, arg: str) -> None:
        """Answer ``AUTH mechanism [initial-response]``."""
        quirks = self.quirks
        out = self.out
        if not self.config.auth_users:
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
            self.auth_user = user
            self.stats.auth_successes += 1
            self.out.append(R_AUTH_OK)
        else:
            self._auth_failed()

    def _auth_failed(self) -> None:
        self.stats.auth_failures += 1
        self.out.append(R_AUTH_FAIL)
        if self.quirks and "U-03" in self.quirks:
            self.out.append(f"421 4.7.0 {self.config.hostname} Error: too many authentication failures\r\n".encode())
            self.closing = True
