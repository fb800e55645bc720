"""The message a probe sends: built with the standard library's ``email``, or taken whole from ``--data``.

Built messages carry ``From``, ``To``, ``Subject``, ``Date`` and
``Message-ID``; ``--header`` replaces a header of the same name or adds one;
``--attach`` turns the message into ``multipart/mixed`` with each file as a
base64 part (type guessed from the name).  A ``--data`` message is sent as
given, except that ``--header`` values replace or join its header block.
Line ends are CRLF either way; dot-stuffing happens later, on the wire.
"""

from __future__ import annotations

import email.policy
import email.utils
import mimetypes
import re
from email.message import EmailMessage

from smtpbench.probe.options import ProbeOptions

DEFAULT_BODY = "This is a test message sent by smtpbench probe.\n"

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
#: The start of a header field (RFC 5322 2.2: a printable name without ':' and then ':').
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def build_message(opts: ProbeOptions) -> bytes:
    """The message octets (CRLF line ends, not yet dot-stuffed) for ``opts``."""
    if opts.data is not None:
        return _with_headers(_LINE_ENDS.sub(b"\r\n", opts.data), opts.headers)
    # 7-bit transfer encodings for 8-bit text: the message then needs no 8BITMIME (RFC 6152) anywhere.
    msg = EmailMessage(policy=email.policy.SMTP.clone(cte_type="7bit"))
    msg["From"] = opts.sender or "<>"
    msg["To"] = ", ".join(opts.recipients) or "undisclosed-recipients:;"
    msg["Subject"] = f"smtpbench probe {email.utils.formatdate(localtime=True)}"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=opts.helo)
    msg.set_content(opts.body if opts.body is not None else DEFAULT_BODY)
    for path in opts.attachments:
        ctype, encoding = mimetypes.guess_type(path.name)
        if ctype is None or encoding is not None:
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    for name, value in opts.headers:
        del msg[name]
        msg[name] = value
    return msg.as_bytes()


def _with_headers(message: bytes, headers: list[tuple[str, str]]) -> bytes:
    """``message`` with each of ``headers`` replacing the fields of that name (continuation lines too), or added."""
    if not headers:
        return message
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        # No blank line: header fields only (RFC 5322 3.5: the body is optional), or no header block at all.
        head, body = (message.removesuffix(b"\r\n"), b"") if _FIELD.match(message) else (b"", message)
    lines = head.split(b"\r\n") if head else []
    names = {name.lower().encode() for name, _ in headers}
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in names
        if not dropping:
            kept.append(line)
    kept.extend(f"{name}: {value}".encode() for name, value in headers)
    return b"\r\n".join(kept) + b"\r\n\r\n" + body
