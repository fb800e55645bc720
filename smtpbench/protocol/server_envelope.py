"""The server role's envelope commands: MAIL and RCPT (RFC 5321 4.1.1.2-3; RFC 1870, 3461, 4954, 6152, 6531).

The everyday shapes (``FROM:<a@b.c>``, ``TO:<a@local.domain>``, no
parameters) are recognised by one regex each and answered at once; anything
else takes the full route through path, parameter and address checks.
"""

from __future__ import annotations

from smtpbench.protocol import syntax
from smtpbench.protocol.commands import split_params, split_path
from smtpbench.protocol.server_state import (
    R_MAIL_OK,
    R_NEED_EHLO,
    R_NEED_MAIL,
    R_NEED_TLS,
    R_NESTED,
    R_NON_ASCII_MAIL,
    R_NON_ASCII_RCPT,
    R_RCPT_OK,
    R_RELAY,
    R_SIZE_EXCEEDED,
    R_TOO_MANY,
    ServerState,
    shown,
)

_SIMPLE_MAIL = syntax.SIMPLE_MAIL.match
_SIMPLE_RCPT = syntax.SIMPLE_RCPT.match


class EnvelopeMixin(ServerState):
    """MAIL and RCPT for :class:`~smtpbench.protocol.server.ServerConnection`."""

    def mail(self, arg: str) -> None:
        """Answer ``MAIL <arg>``: open a transaction or say why not."""
        quirks = self.quirks
        if self.paced:
            self.on_phase("mail")
        out = self.out
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if quirks and "T-05" in quirks and not self.tls:
            out.append(R_NEED_TLS)
            return
        if not quirks and self.mail_from is None and _SIMPLE_MAIL(arg) is not None:
            self.mail_from = arg[6:-1]
            out.append(R_MAIL_OK)
            return
        if self.mail_from is not None:
            if quirks and "X-02" in quirks:
                self.reset_transaction()
                out.append(b"501 5.5.4 Syntax error in MAIL command\r\n")
                return
            if not (quirks and "S-04" in quirks):
                out.append(R_NESTED)
                return
            self.reset_transaction()
        parsed = split_path(arg, "FROM")
        if parsed is None:
            out.append(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        path, tail = parsed
        params: dict[str, str | None] = {}
        size = -1
        body8 = binary = utf8 = False
        if tail:
            for name, value in split_params(tail):
                if name in params and not (quirks and "N-01" in quirks and name in ("RET", "ENVID")):
                    out.append(f"501 5.5.4 Error: duplicate {shown(name)} parameter\r\n".encode())
                    return
                params[name] = value
                bad = self._mail_param(name, value)
                if bad is not None:
                    out.append(bad)
                    return
            raw_size = params.get("SIZE")
            if raw_size is not None and raw_size.isascii() and raw_size.isdigit():
                size = int(raw_size)
            body = (params.get("BODY") or "").upper()
            body8 = body == "8BITMIME"
            binary = body == "BINARYMIME"
            utf8 = "SMTPUTF8" in params
        if path:
            bad = self._check_address(path, utf8, sender=True)
            if bad is not None:
                out.append(bad)
                return
        elif quirks and "A-01" in quirks:
            out.append(b"553 5.1.7 Error: null sender not allowed\r\n")
            return
        limit = self.config.max_size
        if limit and size > limit and not (quirks and "Z-01" in quirks):
            out.append(R_SIZE_EXCEEDED)
            return
        self.mail_from = path
        self.mail_params = params
        self.utf8 = utf8
        self.body8 = body8
        self.binary = binary
        out.append(R_MAIL_OK)

    def _mail_param(self, name: str, value: str | None) -> bytes | None:
        quirks = self.quirks
        if name == "SIZE":
            if quirks and "Z-02" in quirks:
                return None
            if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
                return b"501 5.5.4 Error: SIZE needs 1 to 20 digits\r\n"
        elif name == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
                return b"501 5.5.4 Error: BODY must be 7BIT, 8BITMIME or BINARYMIME\r\n"
        elif name == "SMTPUTF8":
            if value is not None and not (quirks and "B-02" in quirks):
                return b"501 5.5.4 Error: SMTPUTF8 takes no value\r\n"
        elif name == "AUTH":
            if quirks and "U-05" in quirks and self.auth_user is None:
                return b"555 5.5.4 Error: AUTH parameter not accepted\r\n"
            if not value or not syntax.valid_xtext(value):
                return b"501 5.5.4 Error: AUTH needs an xtext mailbox or <>\r\n"
        elif name == "RET":
            if not (quirks and "N-01" in quirks) and (value is None or value.upper() not in ("FULL", "HDRS")):
                return b"501 5.5.4 Error: RET must be FULL or HDRS\r\n"
        elif name == "ENVID":
            if not (quirks and "N-01" in quirks) and (not value or len(value) > 100 or not syntax.valid_xtext(value)):
                return b"501 5.5.4 Error: ENVID must be xtext of at most 100 characters\r\n"
        elif not (quirks and "B-04" in quirks):
            return f"555 5.5.4 Error: unsupported parameter {shown(name)}\r\n".encode()
        return None

    def _check_address(self, path: str, utf8: bool, *, sender: bool) -> bytes | None:
        """Syntax and charset checks shared by MAIL and RCPT; None when acceptable."""
        quirks = self.quirks
        code = "5.1.7" if sender else "5.1.3"
        what = "sender" if sender else "recipient"
        if quirks and "A-04" in quirks and len(path) > 64:
            return f"501 {code} Error: path too long\r\n".encode()
        stripped = syntax.strip_route(path)
        if stripped is None or (quirks and "A-03" in quirks and stripped[1]):
            return f"501 {code} Error: bad {what} address syntax\r\n".encode()
        mailbox = stripped[0]
        if not mailbox.isascii():
            if not utf8:
                return R_NON_ASCII_MAIL if sender else R_NON_ASCII_RCPT
            if quirks and "B-03" in quirks:
                return f"553 5.6.7 Error: non-ASCII {what} not supported\r\n".encode()
        local, domain = syntax.split_mailbox(mailbox)
        if sender:
            ok = (
                bool(domain)
                and syntax.valid_domain(domain, utf8=utf8, allow_underscore=bool(quirks and "X-05" in quirks))
                and syntax.valid_local_part(local, utf8=utf8)
            )
            return None if ok else f"501 {code} Error: bad {what} address syntax\r\n".encode()
        return None

    def rcpt(self, arg: str) -> None:
        """Answer ``RCPT <arg>``: add a recipient to the open transaction or say why not."""
        if self.paced:
            self.on_phase("rcpt")
        self._rcpt_reply(arg)
        if self.p01 is not None and self.out:
            # P-01: this reply is held back until the end of the pipelined group.
            self.p01.append(self.out.pop())

    def _rcpt_reply(self, arg: str) -> None:
        quirks = self.quirks
        out = self.out
        if self.greeted is None:
            out.append(R_NEED_EHLO)
            return
        if self.mail_from is None:
            if not (quirks and "S-02" in quirks):
                out.append(R_NEED_MAIL)
                return
            self.mail_from = ""
        if not quirks and not self.chancy:
            simple = _SIMPLE_RCPT(arg)
            if (
                simple is not None
                and simple.group(2).lower() in self.config.local_domains
                and len(self.rcpts) < self.config.max_recipients
            ):
                self.rcpts.append(arg[4:-1])
                self.stats.recipients_accepted += 1
                out.append(R_RCPT_OK)
                return
        parsed = split_path(arg, "TO")
        if parsed is None:
            out.append(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        path, tail = parsed
        if tail:
            bad = self._rcpt_params(tail)
            if bad is not None:
                out.append(bad)
                return
        if not path:
            out.append(b"501 5.1.3 Error: empty recipient\r\n")
            return
        bad = self._check_address(path, self.utf8, sender=False)
        if bad is not None:
            out.append(bad)
            return
        limit = 50 if quirks and "L-01" in quirks else self.config.max_recipients
        if len(self.rcpts) >= limit:
            if quirks and "L-02" in quirks:
                self.rcpts.clear()
            self.stats.recipients_rejected += 1
            out.append(R_TOO_MANY)
            return
        bad = self._rcpt_mailbox(path)
        if bad is not None:
            out.append(bad)
            return
        self.rcpts.append(path)
        self.stats.recipients_accepted += 1
        out.append(R_RCPT_OK)

    def _rcpt_params(self, tail: str) -> bytes | None:
        """RFC 3461 NOTIFY and ORCPT checks; the refusal, or None when acceptable."""
        quirks = self.quirks
        seen: set[str] = set()
        lax = bool(quirks and "N-01" in quirks)
        for name, value in split_params(tail):
            if name in seen and not lax:
                return f"501 5.5.4 Error: duplicate {shown(name)} parameter\r\n".encode()
            seen.add(name)
            if name == "NOTIFY":
                if not lax and (value is None or not syntax.valid_notify(value)):
                    return b"501 5.5.4 Error: NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY\r\n"
            elif name == "ORCPT":
                if not lax and (value is None or len(value) > 500 or not syntax.valid_orcpt(value)):
                    return b"501 5.5.4 Error: ORCPT must be addr-type;xtext\r\n"
            elif not (quirks and "B-04" in quirks):
                return f"555 5.5.4 Error: unsupported parameter {shown(name)}\r\n".encode()
        return None

    def _rcpt_mailbox(self, path: str) -> bytes | None:
        """Postmaster, syntax, relay and knob checks of a recipient; the refusal, or None."""
        quirks = self.quirks
        stats = self.stats
        mailbox = syntax.strip_route(path)[0]  # type: ignore[index]  # checked by _check_address
        local, domain = syntax.split_mailbox(mailbox)
        if self._is_postmaster(local, domain):
            return None
        if quirks and "A-02" in quirks and local.lower() == "postmaster":
            return b"550 5.1.1 Error: user unknown\r\n"
        if domain and not syntax.valid_domain(domain, utf8=self.utf8):
            return b"501 5.1.3 Error: bad recipient address syntax\r\n"
        plain_local = syntax.unquote_local(local)
        routed = any(c in plain_local for c in "@%!")
        if not syntax.valid_local_part(local, utf8=self.utf8) and not routed:
            return b"501 5.1.3 Error: bad recipient address syntax\r\n"
        foreign = routed or (domain and not self.config.is_local_domain(domain))
        if foreign and self.auth_user is None and not (quirks and "SEC-01" in quirks):
            stats.recipients_rejected += 1
            return R_RELAY
        if self.chancy:
            return self.rcpt_refusal()
        return None

    def _is_postmaster(self, local: str, domain: str) -> bool:
        if self.quirks and "A-02" in self.quirks:
            return local == "postmaster" and bool(domain) and self.config.is_local_domain(domain)
        return local.lower() == "postmaster" and (not domain or self.config.is_local_domain(domain))
