"""Checks against tiny scripted servers: broken behaviour the sink does not offer,
hostile bytes (hypothesis), silence and resets -- every one ends in a verdict, never a hang."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Awaitable, Callable

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpbench.conform.checks import select
from smtpbench.conform.model import CheckResult, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.runner import Runner

Reply = Callable[[bytes], bytes | None]


def compliant(line: bytes) -> bytes | None:
    """A minimal well-behaved server: enough for A-02/C-01/G-01 style checks."""
    verb = line.split(b" ", 1)[0].upper()
    if verb == b"EHLO":
        return b"250-fake.example\r\n250 8BITMIME\r\n"
    if verb == b"QUIT":
        return None
    return {b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n", b"RSET": b"250 ok\r\n", b"NOOP": b"250 ok\r\n"}.get(
        verb, b"500 unknown\r\n"
    )


def serve(
    reply: Reply, greeting: bytes = b"220 fake.example ESMTP\r\n"
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def handler(stream: trio.SocketStream) -> None:
        buf = b""
        try:
            if greeting:
                await stream.send_all(greeting)
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    out = reply(line)
                    if out is None:
                        await stream.send_all(b"221 bye\r\n")
                        return
                    await stream.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    return handler


def run_against(
    handler: Callable[[trio.SocketStream], Awaitable[None]], ids: tuple[str, ...], **opts: object
) -> dict[str, CheckResult]:
    async def main() -> list[CheckResult]:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            options = ConformOptions(port=port, rcpt="user@fake.example", timeout=1.0, quiet_wait=0.1)
            for k, v in opts.items():
                setattr(options, k, v)
            results = await Runner(options).run(select(ids))
            nursery.cancel_scope.cancel()
        return results

    return {r.id: r for r in trio.run(main)}


def test_postmaster_refused_fails_a02() -> None:
    def no_bare_postmaster(line: bytes) -> bytes | None:
        if line.upper().startswith(b"RCPT TO:<POSTMASTER>"):
            return b"550 no such user\r\n"
        return compliant(line)

    assert run_against(serve(compliant), ("A-02",))["A-02"].verdict is Verdict.PASS
    r = run_against(serve(no_bare_postmaster), ("A-02",))["A-02"]
    assert r.verdict is Verdict.FAIL
    assert "C: RCPT TO:<Postmaster>" in r.evidence and "S: 550 no such user" in r.evidence


def test_refusal_greeting_handled_politely_passes_c02() -> None:
    def refusing(line: bytes) -> bytes | None:
        return None if line.upper() == b"QUIT" else b"503 no service\r\n"

    r = run_against(serve(refusing, greeting=b"554 go away\r\n"), ("C-02",))["C-02"]
    assert r.verdict is Verdict.PASS, r.reason


def test_missing_sp_on_last_line_is_a_g01_warning() -> None:
    def lazy(line: bytes) -> bytes | None:
        return b"250\r\n" if line.upper() == b"NOOP" else compliant(line)

    r = run_against(serve(lazy), ("G-01",))["G-01"]
    assert r.verdict is Verdict.WARN
    assert "lacks the SP" in r.reason


def test_silent_server_gives_errors_within_bounds() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep(30)

    started = time.monotonic()
    results = run_against(silent, ("C-01", "R-02", "G-01"))
    assert time.monotonic() - started < 8
    assert results["R-02"].verdict is Verdict.ERROR
    assert results["C-01"].verdict is Verdict.ERROR
    assert "greeting" in results["C-01"].reason


def test_server_that_resets_gives_errors() -> None:
    async def reset(stream: trio.SocketStream) -> None:
        await trio.aclose_forcefully(stream)

    results = run_against(reset, ("C-01", "X-01", "D-07"))
    assert {r.verdict for r in results.values()} == {Verdict.ERROR}


def test_connection_refused_is_error_for_every_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = ConformOptions(port=port, timeout=1.0)
    results = trio.run(Runner(opts).run, select(("C", "S")))
    assert results and all(r.verdict is Verdict.ERROR and "refused" in r.reason for r in results)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(greeting=st.binary(max_size=300), answer=st.binary(max_size=300))
def test_hostile_bytes_always_end_in_verdicts(greeting: bytes, answer: bytes) -> None:
    def hostile(line: bytes) -> bytes | None:
        return answer

    started = time.monotonic()
    results = run_against(serve(hostile, greeting=greeting), ("G-01", "C-01", "X-04", "D-07"), timeout=0.3)
    assert time.monotonic() - started < 8
    assert set(results) == {"G-01", "C-01", "X-04", "D-07"}
    for r in results.values():
        assert isinstance(r.verdict, Verdict)
        assert r.reason


def test_r03_detects_delivery_of_an_abandoned_message() -> None:
    """A server that 'delivers' whatever it had when the client vanished mid-DATA fails R-03."""
    delivered: list[bytes] = []

    async def leaky(stream: trio.SocketStream) -> None:
        data = b""
        in_data = False
        try:
            await stream.send_all(b"220 leaky.example ESMTP\r\n")
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                if in_data:
                    data += chunk
                    continue
                for line in chunk.split(b"\r\n")[:-1]:
                    verb = line.split(b" ", 1)[0].upper()
                    if verb == b"DATA":
                        in_data = True
                        await stream.send_all(b"354 go\r\n")
                    elif verb == b"QUIT":
                        await stream.send_all(b"221 bye\r\n")
                        return
                    else:
                        await stream.send_all(b"250-leaky.example\r\n250 OK\r\n" if verb == b"EHLO" else b"250 ok\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if data:
                delivered.append(data)  # the bug: an unfinished message is delivered
            await trio.aclose_forcefully(stream)

    async def main() -> list[CheckResult]:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, leaky, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            opts = ConformOptions(port=port, rcpt="user@leaky.example", timeout=1.0, quiet_wait=0.1)
            results = await Runner(opts, oracle=lambda: list(delivered)).run(select(("R-03",)))
            nursery.cancel_scope.cancel()
        return results

    r = trio.run(main)[0]
    assert r.verdict is Verdict.FAIL
    assert "abandoned" in r.reason
