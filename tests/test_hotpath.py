"""The load engine's hot-path shortcuts give exactly the results of the plain paths.

* the reply parser's clean-line fast path and its cache of lines seen vs the
  general path (property tests over server bytes, cut into arbitrary chunks);
* the client state machine's shortcut for plain positive replies vs its
  general transition rules (property test over command/reply sequences);
* batched histogram recording vs one ``record_value`` per value;
* address templates formatted by position vs by name;
* direct socket I/O: EOF, reset and timeouts surface as the same errors.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.load.messages import AddressTemplate, positional_template
from smtpbench.metrics import recorder as recorder_mod
from smtpbench.metrics.recorder import HIGHEST_US, Recorder, new_histogram
from smtpbench.net.connection import SMTPConnection, connect_tcp
from smtpbench.net.errors import ConnectionClosed, SessionTimeout, classify
from smtpbench.protocol import replies as replies_mod
from smtpbench.protocol import state as state_mod
from smtpbench.protocol.errors import LocalProtocolError, SMTPProtocolError
from smtpbench.protocol.replies import DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY, ReplyCache, ReplyParser
from smtpbench.protocol.state import ClientProtocol, State

# Lines a server might send: clean ones (fast path), and every kind of oddity.
_line = st.one_of(
    st.builds(
        lambda c, sep, t, term: c + sep + t + term,
        st.sampled_from([b"220", b"250", b"354", b"421", b"451", b"550", b"299", b"260", b"199", b"2x0"]),
        st.sampled_from([b" ", b"-", b"", b"\t"]),
        st.one_of(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(str.encode),
            st.binary(max_size=12),
            st.sampled_from([b"x" * 504, b"x" * 505, b"2.1.0 Ok"]),
        ),
        st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
    ),
    st.binary(max_size=8),
)


def _parse_all(chunks: list[bytes], fast: bool, parser: ReplyParser | None = None) -> list[object]:
    """Replies (as comparable tuples) or the error type, with the fast path on or off."""
    saved = replies_mod._CLEAN_LINE_MAX
    if not fast:
        replies_mod._CLEAN_LINE_MAX = 10**9  # no cap is that large: the fast path never applies
    try:
        parser = parser or ReplyParser()
        out: list[object] = []
        try:
            for chunk in chunks:
                out += [(r.code, r.lines, r.raw, r.defects) for r in parser.feed(chunk)]
        except SMTPProtocolError as exc:
            out.append(type(exc).__name__)
        out.append(parser.buffered)
        return out
    finally:
        replies_mod._CLEAN_LINE_MAX = saved


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in chunks of the lengths ``cuts`` (and the rest), as reads might deliver it."""
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos : pos + cut])
        pos += cut
    chunks.append(data[pos:])
    return chunks


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=8), st.lists(st.integers(min_value=1, max_value=40), max_size=6))
def test_fast_path_parses_exactly_as_the_general_path(lines: list[bytes], cuts: list[int]) -> None:
    chunks = _cut(b"".join(lines), cuts)
    assert _parse_all(chunks, fast=True) == _parse_all(chunks, fast=False)


# A few lines, so that a list of them repeats lines (the parser's cache of clean lines then answers).
_repeated = st.sampled_from(
    [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.0 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
        b"250-smtp\r\n",
        b"250 2.1.0 Ok\n",
        b"550 5.1.1 no\r\n",
        b"250 2.1.0 \xff\r\n",
        b"2",
        b"50 2.1.0 Ok\r\n",
        b"421 bye\r\n",
        b"250 " + b"x" * 505 + b"\r\n",
        b"250-smtp.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",  # an EHLO reply
        b"250-smtp.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
        b"250-smtp.example\r\n250 PIPELINING\n",  # a defect: never cached whole
        b"250-" + b"y" * 506 + b"\r\n250 ok\r\n",  # a line too long for the whole-reply cache
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_repeated, max_size=30), st.lists(st.integers(min_value=1, max_value=60), max_size=8))
def test_seen_lines_parse_exactly_as_the_general_path(lines: list[bytes], cuts: list[int]) -> None:
    chunks = _cut(b"".join(lines), cuts)
    assert _parse_all(chunks, fast=True) == _parse_all(chunks, fast=False)


_CAPS = st.sampled_from([(DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY), (510, 600), (512, 60), (4096, 40)])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_repeated, max_size=12),
    st.lists(_repeated, max_size=12),
    _CAPS,
    st.lists(st.integers(min_value=1, max_value=60), max_size=6),
)
def test_a_shared_cache_parses_exactly_as_the_general_path(
    first: list[bytes], second: list[bytes], caps: tuple[int, int], cuts: list[int]
) -> None:
    """Two connections' parsers share one ReplyCache (as a run's sessions do), the second with other caps."""
    cache = ReplyCache()
    _parse_all([b"".join(first)], fast=True, parser=ReplyParser(cache=cache))
    chunks = _cut(b"".join(second), cuts)
    shared = _parse_all(chunks, fast=True, parser=ReplyParser(*caps, cache=cache))
    assert shared == _parse_all(chunks, fast=False, parser=ReplyParser(*caps))


def test_a_multi_line_reply_is_parsed_once_per_cache() -> None:
    ehlo = b"250-smtp.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    cache = ReplyCache()
    (first,) = ReplyParser(cache=cache).feed(ehlo)
    parser = ReplyParser(cache=cache)
    cut = ehlo.index(b"\n") + 1  # a read ending after the first line: that reply is parsed line by line
    again = parser.feed(ehlo[:cut]) + parser.feed(ehlo[cut:] + ehlo + b"250 ok\r\n")
    assert [r.lines for r in again] == [first.lines, first.lines, ("ok",)]
    assert again[0] is not first and again[1] is first and cache.whole == [(ehlo, first)]


def test_seen_lines_are_answered_from_the_cache_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = ReplyParser()
    group = b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    first = parser.feed(group)
    again = parser.feed(group)
    assert [r.raw for r in again] == [r.raw for r in first] and all(a is b for a, b in zip(again, first, strict=True))
    monkeypatch.setattr(replies_mod, "_SEEN_MAX", 8)
    bounded = ReplyParser()
    out = bounded.feed(b"".join(b"250 ok %d\r\n" % i for i in range(50)))
    assert [r.lines for r in out] == [(f"ok {i}",) for i in range(50)] and len(bounded.cache.lines) == 8


_VERBS = ["CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "DATA_END", "BDAT", "BDAT_LAST", "RSET", "NOOP"]
_VERBS += ["QUIT", "AUTH", "AUTH_RESPONSE", "STARTTLS", "VRFY"]
_CODES = [220, 221, 235, 250, 251, 334, 354, 421, 450, 451, 500, 503, 550, 554]


def _run_state_machine(steps: list[tuple[str, int, int]], plain: bool) -> list[object]:
    """The states a client goes through for ``steps`` (send a verb, then feed so many replies of a code)."""
    saved = state_mod._PLAIN_POSITIVE
    if not plain:
        state_mod._PLAIN_POSITIVE = frozenset()  # every reply takes the general path
    try:
        proto = ClientProtocol()
        trail: list[object] = []
        for verb, code, answered in steps:
            try:
                proto.send(verb, b"")
            except LocalProtocolError:
                trail.append("refused")
            for _ in range(min(answered, len(proto.pending) or 1)):
                try:
                    trail.append([v for v, _ in proto.receive(b"%d x\r\n" % code)])
                except SMTPProtocolError as exc:
                    trail.append(type(exc).__name__)
                    return trail
                trail.append((proto.state, proto._optimistic, tuple(proto.pending)))
        return trail
    finally:
        state_mod._PLAIN_POSITIVE = saved


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_VERBS), st.sampled_from(_CODES), st.integers(min_value=0, max_value=3)),
        max_size=25,
    )
)
def test_plain_positive_replies_move_the_state_as_the_general_rules(steps: list[tuple[str, int, int]]) -> None:
    assert _run_state_machine(steps, plain=True) == _run_state_machine(steps, plain=False)


def test_plain_positive_shortcut_is_taken_in_a_pipelined_transaction() -> None:
    proto = ClientProtocol()
    proto.receive(b"220 hi\r\n")
    proto.send("EHLO", b"")
    proto.receive(b"250 hi\r\n")
    for verb in ("MAIL", "RCPT", "DATA"):
        proto.send(verb, b"")
    assert [v for v, _ in proto.receive(b"250 a\r\n250 b\r\n354 c\r\n")] == ["MAIL", "RCPT", "DATA"]
    assert proto.state is State.DATA and hash(State.DATA) == object.__hash__(State.DATA)


def test_fast_path_pipelined_group_in_one_segment() -> None:
    replies = ReplyParser().feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
    assert [r.code for r in replies] == [250, 250, 354]
    assert replies[0].lines == ("2.1.0 Ok",) and replies[0].enhanced == "2.1.0" and replies[2].defects == ()


@pytest.mark.parametrize("pending_max", [1, 7, 4096])
def test_batched_recording_is_exact(monkeypatch: pytest.MonkeyPatch, pending_max: int) -> None:
    monkeypatch.setattr(recorder_mod, "PENDING_MAX", pending_max)
    rng = random.Random(7)
    values = [rng.choice([0, 1, 5, 999, 123_456, HIGHEST_US, HIGHEST_US + 5, -3]) for _ in range(2000)]
    values += [int(rng.lognormvariate(7, 2)) for _ in range(3000)]
    rec = Recorder(0.0)
    ref = new_histogram()
    clamped = 0
    for v in values:
        rec.record("mail", v)
        if not ref.record_value(v):
            clamped += 1
            ref.record_value(HIGHEST_US if v > 0 else 0)
    assert rec.peek("mail", 99.0) == [int(ref.get_value_at_percentile(99.0))]
    (interval,) = rec.rotate(1.0)
    assert interval.histogram.encode() == ref.encode()
    assert rec.totals["mail"].get_total_count() == len(values) and rec.clamped == clamped
    assert rec.rotate(2.0) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**33), min_size=1, max_size=300), st.integers(1, 50))
def test_folded_batches_equal_one_record_value_per_value(values: list[int], pending_max: int) -> None:
    saved = recorder_mod.PENDING_MAX
    recorder_mod.PENDING_MAX = pending_max
    try:
        rec = Recorder(0.0)
        ref = new_histogram()
        for v in values:
            rec.record("data_end", v)
            if not ref.record_value(v):
                ref.record_value(HIGHEST_US, 1)
        (interval,) = rec.rotate(1.0)
    finally:
        recorder_mod.PENDING_MAX = saved
    h = interval.histogram
    assert h.encode() == ref.encode()
    assert (h.get_total_count(), h.get_min_value(), h.get_max_value()) == (
        ref.get_total_count(),
        ref.get_min_value(),
        ref.get_max_value(),
    )


def _serve_once(behaviour: str) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"220 hi\r\n")
                if behaviour == "reset":
                    conn.recv(100)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                elif behaviour == "close":
                    conn.recv(100)
                elif behaviour == "silent":
                    time.sleep(1.5)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return listener.getsockname()[1], t


@pytest.mark.parametrize(("behaviour", "kind"), [("close", "closed"), ("reset", "reset"), ("silent", "timeout")])
def test_direct_io_errors_keep_their_kind(behaviour: str, kind: str) -> None:
    port, server = _serve_once(behaviour)

    async def main() -> str:
        conn = SMTPConnection(await connect_tcp(socket.AF_INET, ("127.0.0.1", port)))
        try:
            assert (await conn.next_reply(2.0))[1].code == 220
            await conn.send("EHLO", b"EHLO x\r\n")
            await trio.sleep(0.1)  # let the peer act first, so the read finds EOF/RST at once
            start = time.monotonic()
            await conn.next_reply(0.3, "ehlo")
        except (SessionTimeout, ConnectionClosed, trio.BrokenResourceError) as exc:
            if kind == "timeout":
                assert 0.25 < time.monotonic() - start < 1.0
            return classify(exc)
        finally:
            await conn.aclose()
        return "no error"

    assert trio.run(main) == kind
    server.join(5)


_FIELDS = st.sampled_from(["n", "session", "rcpt", "worker", "n:05d", "session!r", "n:>8", "rcpt:x", "n.real", "x", ""])
_TEXT = st.text(st.sampled_from(list("ab.@-_{}")), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXT, st.one_of(st.none(), _FIELDS)), max_size=5), st.integers(1, 10**6))
def test_positional_address_templates_render_as_by_name(pieces: list[tuple[str, str | None]], n: int) -> None:
    template = "".join(text + ("" if field is None else "{" + field + "}") for text, field in pieces)
    values = {"n": n, "session": n % 97 + 1, "rcpt": n % 5, "worker": 0}

    def outcome(render: Callable[[], str]) -> object:
        try:
            return render()
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            return type(exc).__name__

    expected = outcome(lambda: template.format(**values))
    got = outcome(lambda: AddressTemplate(template).render(values["n"], values["session"], values["rcpt"]))
    assert got == expected or "{" not in template and got == template
    positional = positional_template(template, ("n", "session", "rcpt", "worker"))
    if positional is not None:
        assert outcome(lambda: positional.format(n, values["session"], values["rcpt"], 0)) == expected
