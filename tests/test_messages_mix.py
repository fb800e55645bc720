"""[message] mix, extensions per message, BDAT and DSN at load: against the sink, aiosmtpd and MiniSMTP."""

from __future__ import annotations

import email
import email.policy
import random
from pathlib import Path
from typing import Any

import pytest

from smtpbench.load.extensions import xtext
from smtpbench.load.mime import build
from smtpbench.protocol.commands import bdat_chunks
from tests.hostile import HostileServer, MiniSMTP
from tests.peers import CountingHandler, aiosmtpd_server
from tests.sinkutil import SinkThread
from tests.test_engine import run

MIX = (
    '[message]\nrecipients = 2\nvariants = 3\nmix = [{kind = "text", weight = 50}, '
    '{kind = "html", weight = 25, header_text = "rfc2047", body = "quoted-printable"}, '
    '{kind = "attachment", weight = 25, header_text = "utf8", body = "8bit", attachments = 2, '
    'attachment_size = {distribution = "lognormal", median = "20KiB", sigma = 1.0, max = "200KiB"}}]\n'
)
DSN = 'dsn = {notify = "FAILURE,DELAY", ret = "HDRS", envid = "{run}-{n}"}\n'
STRUCTURE = {
    "text/plain": ["text/plain"],
    "multipart/alternative": ["multipart/alternative", "text/plain", "text/html"],
    "multipart/mixed": ["multipart/mixed", "text/plain", "application/pdf", "image/png"],
}


def _parse(content: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


@pytest.mark.parametrize(("chunking", "pipelining"), [("off", "auto"), ("auto", "auto"), ("on", "off")])
def test_mix_through_the_sink_parses_back_with_the_right_parameters(
    tmp_path: Path, chunking: str, pipelining: str
) -> None:
    with SinkThread() as srv:
        s = run(
            tmp_path,
            srv.port,
            f'[smtp]\nchunking = "{chunking}"\nchunk_size = "8KiB"\npipelining = "{pipelining}"\n'
            "[workload]\nsessions = 3\nmessages = 60\nmessages_per_session = 4\n" + MIX + DSN,
        )
        stored = list(srv.messages)
    assert s["status"] == "completed" and s["counts"]["errors"] == 0, s["errors"]
    assert s["counts"]["messages_accepted"] == 60 == len(stored)
    via = "DATA" if chunking == "off" else "BDAT"
    assert s["transfer"] == {"data": 60 if via == "DATA" else 0, "bdat": 60 if via == "BDAT" else 0}
    kinds: dict[str, int] = {}
    eight_bit = 0
    for m in stored:
        assert m.via == via
        msg = _parse(m.content)
        ctype = msg.get_content_type()
        kinds[ctype] = kinds.get(ctype, 0) + 1
        assert [p.get_content_type() for p in msg.walk()] == STRUCTURE[ctype]
        params = m.mail_params
        assert params["SIZE"] is not None and int(params["SIZE"]) > 0
        assert params["RET"] == "HDRS" and (params["ENVID"] or "").endswith(f"-{m.mail_from[6:].split('@')[0]}")
        if ctype == "multipart/mixed":  # utf8 headers, 8-bit body
            eight_bit += 1
            assert params.get("BODY") == "8BITMIME" and "SMTPUTF8" in params
            assert "Prüfbericht" in m.content.decode("utf-8")
            assert all(len(a.get_content()) <= 200 * 1024 for a in msg.iter_attachments())
        else:
            assert "BODY" not in params and "SMTPUTF8" not in params
            assert m.content.isascii()
        if ctype == "multipart/alternative":
            assert "=?utf-8?" in str(msg.get("Subject").defects or m.content.decode())
            assert msg["Subject"].endswith("Prüfbericht ✓ 日本語")  # RFC 2047 decoded back
    assert set(kinds) == set(STRUCTURE), kinds
    assert s["extensions"] == {"SIZE": 60, "DSN": 60, "8BITMIME": eight_bit, "SMTPUTF8": eight_bit}


def test_aiosmtpd_without_chunking_and_smtputf8(tmp_path: Path) -> None:
    """aiosmtpd lacks CHUNKING (and SMTPUTF8 when told): "auto" falls back to DATA, UTF-8 messages are
    counted as message_unsupported and never sent; "on" fails every session with chunking_unsupported."""
    handler = CountingHandler()
    with aiosmtpd_server(handler, enable_SMTPUTF8=False) as (ctl, _):
        s = run(
            tmp_path,
            ctl.port,
            '[smtp]\nchunking = "auto"\n[workload]\nsessions = 2\nmessages = 40\nmessages_per_session = 5\n' + MIX,
        )
    c = s["counts"]
    assert s["transfer"] == {"data": c["messages_accepted"], "bdat": 0}
    assert c["messages_accepted"] == handler.messages > 0
    assert c["messages_unsupported"] == s["errors"]["message_unsupported"] == s["unsupported"]["SMTPUTF8"] > 0
    assert c["messages_accepted"] + c["messages_unsupported"] == 40
    (tmp_path / "on").mkdir()
    with aiosmtpd_server(CountingHandler()) as (ctl, h2):
        s = run(
            tmp_path / "on",
            ctl.port,
            '[smtp]\nchunking = "on"\n[workload]\nsessions = 2\nmessages = 6\nduration = "1s"\n',
        )
    assert h2.messages == 0 and s["counts"]["messages_accepted"] == 0
    assert s["errors"] == {"chunking_unsupported": s["counts"]["sessions_started"]}


def test_8bit_body_needs_8bitmime(tmp_path: Path) -> None:
    mini = MiniSMTP(eight_bit=False)
    with HostileServer(mini) as srv:
        port = int(srv.target.rsplit(":", 1)[1])
        s = run(
            tmp_path,
            port,
            "[workload]\nsessions = 1\nmessages = 30\nmessages_per_session = 30\n"
            '[message]\nvariants = 2\nmix = [{kind = "text"}, {kind = "text", body = "8bit"}]\n',
        )
    c = s["counts"]
    assert s["unsupported"] == {"8BITMIME": c["messages_unsupported"]} and c["messages_unsupported"] > 0
    assert c["messages_accepted"] == mini.messages == 30 - c["messages_unsupported"]


def test_mix_pool_is_reproducible_and_weighted() -> None:
    from smtpbench.load.messages import MessagePool
    from smtpbench.load.profile import profile_from_dict

    prof = profile_from_dict({"workload": {"sessions": 1, "messages": 1}, "message": {"variants": 2} | _mix()})
    m = prof.message

    def pool() -> MessagePool:
        return MessagePool(m.size, m.variants, 7, m.from_template, m.to_template, m.subject, {}, m.mix, 0)

    a, b = pool(), pool()
    strip = lambda w: b"".join(line for line in w.splitlines(True) if not line.startswith(b"Date:"))  # noqa: E731
    assert [strip(x.wire) for x in a.messages] == [strip(x.wire) for x in b.messages]
    rng = random.Random(1)
    picks = [a.pick(rng).kind for _ in range(20000)]
    assert abs(picks.count("text") / 20000 - 0.6) < 0.02 and abs(picks.count("html") / 20000 - 0.3) < 0.02


def _mix() -> dict[str, Any]:
    return {"mix": [{"kind": "text", "weight": 6}, {"kind": "html", "weight": 3}, {"kind": "attachment", "weight": 1}]}


def test_builders_and_bdat_chunks() -> None:
    raw = build(
        "attachment",
        random.Random(3),
        text_size=2000,
        attachment_sizes=[5000, 1],
        header_text="rfc2047",
        body="quoted-printable",
        sender="a@example.test",
        recipient="b@example.test",
        subject="s",
        headers={"X-Test": "1"},
    )
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = _parse(raw)
    assert [len(p.get_content()) for p in msg.iter_attachments()] == [5000, 1]
    chunks = bdat_chunks(raw, 1000)
    assert b"".join(c.split(b"\r\n", 1)[1] for c in chunks) == raw
    assert all(c.startswith(b"BDAT ") for c in chunks) and chunks[-1].split(b"\r\n")[0].endswith(b" LAST")
    assert sum(c.endswith(b"LAST") for c in (c.split(b"\r\n")[0] for c in chunks)) == 1
    assert bdat_chunks(b"", 10) == [b"BDAT 0 LAST\r\n"]
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d" and len(xtext("é" * 80)) <= 100


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('mix = [{kind = "text", attachment_size = "1KiB"}]', 'only applies to kind = "attachment"'),
        ('mix = [{kind = "video"}]', "is not allowed"),
        ('rewrite = ["From"]', "only applies with corpus"),
        ('corpus = "/nonexistent/corpus"', "not found"),
        ('dsn = {notify = "SOMETIMES"}', "is not allowed"),
        ("dsn = {}", "is empty"),
    ],
)
def test_bad_message_keys_are_one_line_errors(tmp_path: Path, body: str, problem: str) -> None:
    import subprocess
    import sys

    path = tmp_path / "p.toml"
    path.write_text(f"[target]\nembedded = true\n[workload]\nsessions = 1\nmessages = 1\n[message]\n{body}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "smtpbench", "run", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and problem in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
