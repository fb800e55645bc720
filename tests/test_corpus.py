"""[message] corpus: .eml folders, mbox and Maildir indexed and replayed against the sink."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path

import pytest

from smtpbench.errors import ConfigError
from smtpbench.load.corpus import index_corpus
from tests.sinkutil import SinkThread
from tests.test_engine import run


def _messages(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = f"message {i}\nFrom the start of a line\n.a line with a leading dot\n" * (1 + i % 7)
        head = f"From: Orig <orig{i}@corpus.test>\nTo: someone@corpus.test\nSubject: corpus {i}\n"
        head += f"Message-ID: <orig{i}@corpus.test>\nX-Keep: yes\n"
        if i % 5 == 0:  # 8-bit body
            head += "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
            body += "größe ✓\n"
        out.append((head + "\n" + body).encode())
    return out


def _corpus(tmp_path: Path, kind: str, msgs: list[bytes]) -> Path:
    if kind == "mbox":
        box = mailbox.mbox(str(tmp_path / "box.mbox"))
        for m in msgs:
            box.add(m)
        box.close()
        return tmp_path / "box.mbox"
    if kind == "maildir":
        md = mailbox.Maildir(str(tmp_path / "md"))
        for m in msgs:
            md.add(m)
        return tmp_path / "md"
    folder = tmp_path / "eml" / "sub"
    folder.mkdir(parents=True)
    for i, m in enumerate(msgs):
        (folder / f"{i}.eml").write_bytes(m)
    return tmp_path / "eml"


@pytest.mark.parametrize("kind", ["mbox", "maildir", "eml"])
def test_index_reads_back_every_message(tmp_path: Path, kind: str) -> None:
    msgs = _messages(40)
    index = index_corpus(str(_corpus(tmp_path, kind, msgs)))
    assert len(index) == 40 and index.kind == kind
    fd = -1
    if kind == "mbox":
        import os

        fd = os.open(index.path, os.O_RDONLY)
    got = sorted(index.read(i, fd) for i in range(len(index)))
    assert got == sorted(msgs)


@pytest.mark.parametrize("kind", ["mbox", "maildir", "eml"])
def test_replay_through_the_sink_keeps_headers_and_rewrites(tmp_path: Path, kind: str) -> None:
    msgs = _messages(25)
    path = _corpus(tmp_path, kind, msgs)
    with SinkThread() as srv:
        s = run(
            tmp_path,
            srv.port,
            '[smtp]\nchunking = "auto"\n[workload]\nsessions = 2\nmessages = 50\nmessages_per_session = 5\nseed = 4\n'
            f'[message]\ncorpus = "{path}"\nrewrite = ["From", "Message-ID"]\nfrom = "bench{{n}}@smtpbench.example"\n',
        )
        stored = list(srv.messages)
    assert s["status"] == "completed" and s["counts"]["errors"] == 0
    assert s["counts"]["messages_accepted"] == 50 == len(stored)
    assert s["transfer"]["bdat"] == 50
    originals = {email.message_from_bytes(m)["Subject"]: m for m in msgs}
    for m in stored:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        assert msg["From"] == m.mail_from and m.mail_from.startswith("bench")
        assert msg["Message-ID"].endswith("@smtpbench.example>") and len(msg.get_all("Message-ID")) == 1
        assert msg["To"] == "someone@corpus.test" and msg["X-Keep"] == "yes"
        original = originals[msg["Subject"]]
        assert m.content.split(b"\r\n\r\n", 1)[1] == original.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
        assert (m.mail_params.get("BODY") == "8BITMIME") == (not original.isascii())
    assert len({email.message_from_bytes(m.content)["Subject"] for m in stored}) > 10  # sampled, not one


def test_empty_corpus_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty folder"):
        index_corpus(str(tmp_path / "empty"))
    (tmp_path / "x.mbox").write_bytes(b"no separator here\n")
    with pytest.raises(ConfigError, match="empty mbox"):
        index_corpus(str(tmp_path / "x.mbox"))
