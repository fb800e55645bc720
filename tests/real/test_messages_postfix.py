"""A mixed `smtpbench run` through a real Postfix 3.7: 8BITMIME, SMTPUTF8, DSN and BDAT at load.

What Postfix delivered parses back with the standard library's email package into the MIME structure of
each kind of the mix, with the UTF-8 headers intact; Postfix's own log confirms BDAT.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from tests.real.servers import RealServer
from tests.test_engine import run

STRUCTURE = {
    "text/plain": ["text/plain"],
    "multipart/alternative": ["multipart/alternative", "text/plain", "text/html"],
    "multipart/mixed": ["multipart/mixed", "text/plain", "application/pdf"],
}


def test_mixed_run_through_postfix_with_every_extension(postfix: RealServer, tmp_path: Path) -> None:
    assert postfix.host == "127.0.0.1"
    s = run(  # in-process: the engine against Postfix's port
        tmp_path,
        postfix.port,
        '[smtp]\nchunking = "auto"\nchunk_size = "16KiB"\n'
        '[workload]\nsessions = 3\nmessages = 24\nmessages_per_session = 4\nduration = "30s"\ngrace = "10s"\n'
        '[message]\nrecipients = 1\nto = "user{n}@example.test"\nvariants = 2\n'
        'mix = [{kind = "text", weight = 1}, {kind = "html", weight = 1, header_text = "rfc2047"}, '
        '{kind = "attachment", weight = 1, header_text = "utf8", body = "8bit", attachment_size = "40KiB"}]\n'
        'dsn = {notify = "FAILURE,DELAY", ret = "HDRS", envid = "{run}-{n}"}\n',
    )
    assert s["status"] == "completed" and s["counts"]["errors"] == 0, s["errors"]
    assert s["counts"]["messages_accepted"] == 24
    assert s["transfer"] == {"data": 0, "bdat": 24}
    ext = s["extensions"]
    assert ext["SIZE"] == ext["DSN"] == 24 and ext["8BITMIME"] == ext["SMTPUTF8"] > 0
    delivered = postfix.wait_delivered(24)
    kinds: dict[str, int] = {}
    for raw in delivered:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        ctype = msg.get_content_type()
        kinds[ctype] = kinds.get(ctype, 0) + 1
        assert [p.get_content_type() for p in msg.walk()] == STRUCTURE[ctype]
        if ctype != "text/plain":
            assert str(msg["Subject"]).endswith("Prüfbericht ✓ 日本語")
        if ctype == "multipart/mixed":
            (attachment,) = msg.iter_attachments()
            assert len(attachment.get_content()) == 40 * 1024
            assert attachment.get_filename() == "report-1-größe.pdf"
            assert "größe" in msg.get_body(("plain",)).get_content() or "✓" in str(msg["Subject"])
    assert set(kinds) == set(STRUCTURE), kinds
    # Postfix counts each session's MAIL and BDAT commands in its disconnect line: every message went by BDAT
    # (and Postfix took every MAIL's SIZE, BODY, SMTPUTF8, RET and ENVID and each RCPT's NOTIFY: no error above).
    assert postfix.wait_log(
        r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=\d+ rcpt=\d+ bdat=\d+ quit=1", count=1
    )
