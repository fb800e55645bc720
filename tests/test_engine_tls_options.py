"""[target.tls_options] at load: pinned versions, SNI and session resumption, over loopback (trustme certs).

The servers: the sink (the reference server, which issues session tickets
and counts the handshakes it resumed), and for declined resumptions a TLS
front of the sink that alternates between two server contexts (each with
its own ticket keys), so every offered session is one the server cannot take.
"""

from __future__ import annotations

import contextlib
import json
import queue
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from smtpbench.metrics.thresholds import metric_kind
from tests.sinkutil import SinkThread, TLSPair, tls_pair
from tests.test_bad_input import assert_one_line_usage_error, invoke
from tests.test_engine import read_hlog, run

#: 16 sessions, 2 at a time: sessions after the first two always find a saved session (every one saves one).
SESSIONS = 16
CONCURRENT = 2
#: The budget ends a run; the duration only bounds one that goes wrong.
WORKLOAD = f'sessions = {CONCURRENT}\nmessages = {SESSIONS}\nmessages_per_session = 1\nseed = 7\nduration = "30s"\n'
#: One session at a time: exactly one session per message.
ONE_LOOP = WORKLOAD.replace(f"sessions = {CONCURRENT}", "sessions = 1")


def tls_run(
    tmp_path: Path, port: int, pair: TLSPair, mode: str, options: str = "", *overrides: str, workload: str = WORKLOAD
) -> dict[str, Any]:
    body = f'tls = "{mode}"\nca_file = "{pair.ca_file}"\n'
    if options:
        body += f"[target.tls_options]\n{options}\n"
    return run(tmp_path, port, body + f"[workload]\n{workload}", *overrides)


def completed(s: dict[str, Any]) -> int:
    """Assert a clean run of the message budget; its number of sessions (one may end without a message)."""
    counts = s["counts"]
    assert s["status"] == "completed" and counts["errors"] == 0, (s["status"], s["errors"])
    assert counts["messages_accepted"] == SESSIONS
    assert counts["sessions_completed"] == counts["sessions_started"] >= SESSIONS
    return int(counts["sessions_started"])


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_pinned_version_is_the_one_negotiated(tmp_path: Path, version: str) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, store_messages=False) as srv:
        s = tls_run(tmp_path, srv.port, pair, "starttls", f'min_version = "{version}"\nmax_version = "{version}"')
    n = completed(s)
    tls = s["tls"]
    assert tls["versions"] == {version: n}
    assert sum(tls["ciphers"].values()) == n == tls["handshakes"] == tls["full"]
    # TLS 1.3 suites are named TLS_* (RFC 8446 B.4); OpenSSL names the TLS 1.2 ones otherwise.
    assert all(c.startswith("TLS_") == (version == "TLSv1.3") for c in tls["ciphers"])
    # No resumption asked for: every handshake full, and the combined tls phase is their sum.
    assert tls["resumed"] == tls["resume_drawn"] == tls["resume_offered"] == 0
    assert s["phases"]["tls.full"]["count"] == n == s["phases"]["tls"]["count"]
    assert "tls.resumed" not in s["phases"]


def refused_run(tmp_path: Path, pair: TLSPair, options: str) -> dict[str, Any]:
    """A short implicit-TLS run whose every handshake must fail: error kind tls, nothing counted as negotiated."""
    with SinkThread(ssl_context=pair.server_context, implicit_tls=True, store_messages=False) as srv:
        s = tls_run(tmp_path, srv.port, pair, "implicit", options, workload='sessions = 1\nduration = "0.5s"\n')
    assert s["counts"]["messages_accepted"] == 0 and s["errors"] == {"tls": s["counts"]["sessions_started"]}
    assert s["tls"]["handshakes"] == 0 and s["tls"]["versions"] == {}
    return s


def test_version_the_server_lacks_is_a_tls_error(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    pair.server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    refused_run(tmp_path, pair, 'min_version = "TLSv1.3"')


def _recording(pair: TLSPair) -> list[str | None]:
    """The server names offered to the sink's TLS context, one per handshake (None: no SNI)."""
    names: list[str | None] = []
    pair.server_context.sni_callback = lambda _obj, name, _ctx: names.append(name)  # type: ignore[func-returns-value]
    return names


@pytest.mark.parametrize(
    ("host", "options", "seen"),
    [
        ("127.0.0.1", "", None),  # an IP target: no SNI, the certificate checked against the address
        ("localhost", "", "localhost"),  # a name: sent, and the certificate checked against it
        ("127.0.0.1", 'sni = "sink.smtpbench.test"', "sink.smtpbench.test"),  # sent and checked instead
        ("127.0.0.1", 'sni = ""', None),  # none sent (only with insecure)
    ],
)
def test_sni_is_what_the_server_sees(tmp_path: Path, host: str, options: str, seen: str | None) -> None:
    pair = tls_pair(tmp_path)
    names = _recording(pair)
    with SinkThread(ssl_context=pair.server_context, implicit_tls=True, store_messages=False) as srv:
        if options == 'sni = ""':
            body = f'tls = "implicit"\ninsecure = true\n[target.tls_options]\n{options}\n[workload]\n{WORKLOAD}'
            s = run(tmp_path, srv.port, body)
        else:
            s = tls_run(tmp_path, srv.port, pair, "implicit", options, f"target.host={host}")
    assert names == [seen] * completed(s)


def test_certificate_is_checked_against_the_sni_name(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    names = _recording(pair)
    refused_run(tmp_path, pair, 'sni = "other.smtpbench.test"')
    assert set(names) == {"other.smtpbench.test"}  # sent, and refused: the certificate does not name it


@pytest.mark.parametrize(
    ("mode", "version"), [("starttls", "TLSv1.3"), ("implicit", "TLSv1.3"), ("starttls", "TLSv1.2")]
)
def test_resume_all_resumes_every_session_after_the_first_ones(tmp_path: Path, mode: str, version: str) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, implicit_tls=mode == "implicit", store_messages=False) as srv:
        s = tls_run(tmp_path, srv.port, pair, mode, f'resume = 1.0\nmax_version = "{version}"')
        server_resumed = srv.stats.tls_resumed
        server_handshakes = srv.stats.tls_handshakes
    n = completed(s)
    tls = s["tls"]
    # The first sessions (one per loop, started together) find no saved session; every later one finds one: each
    # session saves one before it ends and takes at most one, so a loop's next session always has one to take.
    assert tls["resume_drawn"] == n
    assert 1 <= tls["full"] <= CONCURRENT and tls["resume_declined"] == 0
    assert tls["resume_offered"] == tls["resumed"] == n - tls["full"]
    assert tls["versions"] == {version: n}
    assert server_resumed == tls["resumed"] and server_handshakes == n
    assert s["phases"]["tls.resumed"]["count"] == tls["resumed"]
    assert s["phases"]["tls.full"]["count"] == tls["full"]
    assert s["phases"]["tls"]["count"] == n
    logged = read_hlog(Path(s["_dir"]) / "histograms.hlog")
    assert logged["tls.resumed"] == tls["resumed"] and logged["tls.full"] == tls["full"] and "tls" not in logged


def test_resume_zero_never_offers(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(ssl_context=pair.server_context, store_messages=False) as srv:
        s = tls_run(tmp_path, srv.port, pair, "starttls", "resume = 0")
        server_resumed = srv.stats.tls_resumed
    n = completed(s)
    assert s["tls"]["full"] == n and s["tls"]["resumed"] == s["tls"]["resume_drawn"] == server_resumed == 0


def test_resume_share_is_drawn_with_the_seed(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    drawn = []
    with SinkThread(ssl_context=pair.server_context, store_messages=False) as srv:
        for k in range(2):
            (tmp_path / str(k)).mkdir()
            s = tls_run(tmp_path / str(k), srv.port, pair, "starttls", 'resume = "50%"', workload=ONE_LOOP)
            assert completed(s) == SESSIONS
            tls = s["tls"]
            assert tls["resumed"] == tls["resume_offered"] <= tls["resume_drawn"]
            assert s["phases"].get("tls.resumed", {"count": 0})["count"] == tls["resumed"]
            assert 0 < tls["resume_drawn"] < SESSIONS
            drawn.append(tls["resume_drawn"])
    assert drawn[0] == drawn[1]  # same seed, same draws


@contextmanager
def alternating_tls_front(pair: TLSPair, backend_port: int) -> Iterator[int]:
    """A TLS front of a plain SMTP server: each connection's handshake uses the next of two server contexts.

    The two contexts have the same certificate but their own session ticket
    keys, so a session saved from one connection is never resumable on the
    next: every offered resumption is declined.  Yields the front's port.
    """
    contexts = []
    for _ in range(2):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pair.cert_file, pair.key_file)
        contexts.append(ctx)
    ready: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    async def pipe(src: trio.abc.ReceiveStream, dst: trio.abc.SendStream, done: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            async for chunk in src:
                await dst.send_all(chunk)
        done.cancel()  # one side ended: so does the connection

    async def main() -> None:
        accepted = 0

        async def handler(client: trio.SocketStream) -> None:
            nonlocal accepted
            accepted += 1
            tls = trio.SSLStream(client, contexts[accepted % 2], server_side=True)
            try:
                with trio.fail_after(10):
                    await tls.do_handshake()
                    backend = await trio.open_tcp_stream("127.0.0.1", backend_port)
                async with backend, trio.open_nursery() as both:
                    both.start_soon(pipe, tls, backend, both.cancel_scope)
                    both.start_soon(pipe, backend, tls, both.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ssl.SSLError, OSError):
                pass  # a connection that fails is the client's to count
            finally:
                await trio.aclose_forcefully(tls)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handler, 0)
            ready.put(listeners[0].socket.getsockname()[1])
            while not stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)


def test_declined_resumption_is_a_full_handshake(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    with SinkThread(store_messages=False) as srv, alternating_tls_front(pair, srv.port) as port:
        s = tls_run(tmp_path, port, pair, "implicit", "resume = 1.0", workload=ONE_LOOP)
    n = completed(s)
    tls = s["tls"]
    # One at a time: every session but the first offers the previous one's session, made by the other context.
    assert tls["resume_offered"] == tls["resume_declined"] == n - 1
    assert tls["resumed"] == 0 and tls["full"] == n == s["phases"]["tls.full"]["count"]
    assert "tls.resumed" not in s["phases"]


TLS_BASE = '[target]\nhost = "127.0.0.1"\nport = 2525\ntls = "starttls"\ninsecure = true\n[workload]\nsessions = 1\n'
BAD_OPTIONS = [
    ("unknown version", 'min_version = "TLSv1.4"', ["target.tls_options.min_version", "TLSv1.2, TLSv1.3"]),
    ("version misspelt", 'max_version = "TLS1.3"', ["target.tls_options.max_version", "did you mean TLSv1.3"]),
    ("min above max", 'min_version = "TLSv1.3"\nmax_version = "TLSv1.2"', ["min_version", "above max_version"]),
    ("sni an address", 'sni = "192.0.2.1"', ["target.tls_options.sni", "IP address"]),
    ("sni not a name", 'sni = "mail example"', ["target.tls_options.sni", "not a host name"]),
    ("sni trailing dot", 'sni = "mail.example."', ["target.tls_options.sni", "dot"]),
    ("resume above 1", "resume = 1.5", ["target.tls_options.resume"]),
    ("resume not a ratio", 'resume = "often"', ["target.tls_options.resume"]),
    ("unknown key", "resumption = 0.5", ["target.tls_options.resumption", "did you mean resume"]),
]


@pytest.mark.parametrize(("options", "fragments"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_bad_tls_options_are_one_line_errors(tmp_path: Path, options: str, fragments: list[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text(TLS_BASE + f"[target.tls_options]\n{options}\n")
    code, out, err = invoke(["run", str(path), "--results-dir", str(tmp_path / "results")])
    assert_one_line_usage_error(code, out, err, *fragments)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            TLS_BASE.replace('"starttls"', '"none"').replace("insecure = true\n", ""),
            ["target.tls_options", "only applies"],
        ),
        (TLS_BASE.replace("insecure = true\n", ""), ["target.tls_options.sni", "no name to verify", "insecure"]),
    ],
    ids=["without tls", "no sni while verifying"],
)
def test_tls_options_rules_between_keys(tmp_path: Path, body: str, fragments: list[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body + '[target.tls_options]\nsni = ""\n')
    code, out, err = invoke(["run", str(path), "--results-dir", str(tmp_path / "results")])
    assert_one_line_usage_error(code, out, err, *fragments)


def test_split_phases_are_threshold_metrics() -> None:
    assert metric_kind("tls.full.p99") == metric_kind("tls.resumed.max") == metric_kind("tls.p99") == "duration"
    assert metric_kind("tls.resumed.count") == "number"


def test_tls_counts_merge_across_shards(tmp_path: Path) -> None:
    pair = tls_pair(tmp_path)
    profile = tmp_path / "profile.toml"
    with SinkThread(ssl_context=pair.server_context, store_messages=False) as srv:
        profile.write_text(
            f'[target]\nhost = "127.0.0.1"\nport = {srv.port}\ntls = "starttls"\nca_file = "{pair.ca_file}"\n'
            f'[target.tls_options]\nresume = 1.0\n[output]\nprogress = "none"\n[workload]\n{WORKLOAD}'
        )
        for i in range(2):
            code, _, err = invoke(
                ["run", str(profile), "--shard", f"{i}/2", "-q", "--results-dir", str(tmp_path / f"s{i}")]
            )
            assert code == 0, err
    parts = [json.loads(next((tmp_path / f"s{i}").glob("*/summary.json")).read_text()) for i in range(2)]
    code, _, err = invoke(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "-o", str(tmp_path / "m"), "-q"])
    assert code == 0, err
    merged = json.loads((tmp_path / "m" / "summary.json").read_text())
    tls = merged["tls"]
    for name in ("handshakes", "full", "resumed", "resume_drawn", "resume_offered", "resume_declined"):
        assert tls[name] == parts[0]["tls"][name] + parts[1]["tls"][name], name
    assert tls["resumed"] > 0 and tls["handshakes"] == merged["counts"]["sessions_started"]
    assert sum(tls["versions"].values()) == sum(tls["ciphers"].values()) == tls["handshakes"]
    assert merged["phases"]["tls.resumed"]["count"] == tls["resumed"]
    assert merged["phases"]["tls"]["count"] == tls["handshakes"]
    assert not any(name.startswith("tls.") for name in merged["counts"])
