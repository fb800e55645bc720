"""Deliberately broken (and a few well-behaved) servers for robustness tests.

Every server listens on 127.0.0.1 (or ::1) on a free port, serves each
connection in its own daemon thread, and stops cleanly: ``stop()`` closes the
listener, tells every handler to give up (handlers poll a stop event between
short socket timeouts), shuts the open connections and joins the threads with
a bound.  Use them as context managers::

    with HostileServer(no_greeting) as srv:
        ... srv.port ...

Handlers take a :class:`Peer` (a socket wrapper whose every wait returns early
once the server is stopping or the client has gone) and return when done.

Also here: :func:`make_app`, the CLI app the tests drive in-process (the real
``smtpbench`` app once every sub-command imports, else the sub-commands that
do), and :func:`cli_argv`, the matching command line for subprocess tests.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import typer

POLL_S = 0.05


class Peer:
    """One accepted connection, with waits that end when the server stops."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.buf = b""
        self.closed = False
        sock.settimeout(POLL_S)

    @property
    def alive(self) -> bool:
        """True while neither side has given up."""
        return not self.closed and not self.stop.is_set()

    def send(self, data: bytes | memoryview) -> bool:
        """Send everything (retrying across timeouts); False once the client is gone."""
        view = memoryview(data)
        while view and self.alive:
            try:
                n = self.sock.send(view)
            except TimeoutError:
                continue
            except OSError:
                self.closed = True
                return False
            view = view[n:]
        return not view

    def recv_some(self) -> bytes | None:
        """Bytes from the client; b"" when nothing arrived yet; None on EOF or stop."""
        if not self.alive:
            return None
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError:
            self.closed = True
            return None
        if not data:
            self.closed = True
            return None
        return data

    def recv_line(self, limit: int = 1 << 20) -> bytes | None:
        """The next CRLF-terminated line (without CRLF), or None on EOF/stop."""
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                return None
            data = self.recv_some()
            if data is None:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def drain(self) -> None:
        """Swallow whatever the client sends until it closes (or the server stops)."""
        while self.recv_some() is not None:
            pass

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False if it did."""
        return not self.stop.wait(seconds)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        self.closed = True


Handler = Callable[[Peer], None]


class HostileServer:
    """A threaded TCP server on loopback running ``handler`` for each connection."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(512)
        self.listener.settimeout(POLL_S)
        self.port: int = self.listener.getsockname()[1]
        self.stop_event = threading.Event()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"hostile-{self.port}", daemon=True)

    @property
    def target(self) -> str:
        """``HOST:PORT`` as the CLI takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> HostileServer:
        """Start accepting; returns self."""
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
                t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        peer = Peer(sock, self.stop_event)
        try:
            self.handler(peer)
        except OSError:
            pass  # the client going away mid-write is the normal end for a hostile server
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock, contextlib.suppress(ValueError):
                self._socks.remove(sock)

    def stop(self) -> None:
        """Stop accepting, end every handler, join the threads (bounded)."""
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        self._acceptor.join(timeout=2)
        with self._lock:
            threads = list(self._threads)
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 3
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


# ------------------------------------------------------------------ broken servers


def no_greeting(p: Peer) -> None:
    """Accepts and says nothing, ever."""
    p.drain()


def greeting_then_silence(p: Peer) -> None:
    """A proper 220, then never another word."""
    p.send(b"220 silent.test ESMTP\r\n")
    p.drain()


def endless_reply(p: Peer) -> None:
    """A greeting whose continuation lines never end."""
    chunk = b"220-still greeting you, this line goes on and on\r\n" * 200
    while p.send(chunk):
        pass


#: Built once, outside any memory measurement: 10 MB with no line end.
HUGE_LINE = b"220 " + b"x" * (10 * 1024 * 1024)


def huge_line(p: Peer) -> None:
    """A 10 MB greeting line with no line end."""
    p.send(memoryview(HUGE_LINE))
    p.drain()


def http_server(p: Peer) -> None:
    """An HTTP server: waits for a request, answers 400 and closes."""
    while b"\r\n\r\n" not in p.buf and len(p.buf) < 65536:
        data = p.recv_some()
        if data is None:
            return
        p.buf += data
    p.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def http_banner(p: Peer) -> None:
    """An HTTP-speaking service that talks first (a misdirected proxy): not SMTP at all."""
    p.send(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")
    p.drain()


def slow_drip(p: Peer) -> None:
    """A valid greeting, one byte per second."""
    for b in b"220 slow.test ESMTP a very slow greeting\r\n":
        if not p.send(bytes([b])) or not p.sleep(1.0):
            return
    p.drain()


def close_during_handshake(p: Peer) -> None:
    """Reads the TLS ClientHello, then hangs up."""
    while not p.buf:
        data = p.recv_some()
        if data is None:
            return
        p.buf += data
    p.reset()


def refused_port() -> int:
    """A loopback port with no listener (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ a configurable SMTP server


@dataclass
class MiniSMTP:
    """A tiny, fast, correct-enough SMTP server with switchable faults.

    ``mail_reply`` replaces the answer to MAIL (e.g. a 421); ``data_fault`` is
    ``None`` (accept), ``"reset"`` (TCP RST once message data arrives) or
    ``"stall"`` (never answer the final dot); ``auth`` = (user, password)
    advertises AUTH PLAIN LOGIN and checks the credentials (successes are
    counted in ``auth_ok``, failures in ``auth_bad``).
    """

    mail_reply: bytes = b"250 2.1.0 ok\r\n"
    data_fault: str | None = None
    auth: tuple[str, str] | None = None
    pipelining: bool = True
    eight_bit: bool = True  # advertise 8BITMIME
    messages: int = 0
    auth_ok: int = 0
    auth_bad: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, p: Peer) -> None:
        if not p.send(b"220 mini.test ESMTP\r\n"):
            return
        while True:
            line = p.recv_line()
            if line is None:
                return
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                ext = [b"mini.test"]
                if self.pipelining:
                    ext.append(b"PIPELINING")
                if self.auth:
                    ext.append(b"AUTH PLAIN LOGIN")
                if self.eight_bit:
                    ext.append(b"8BITMIME")
                p.send(b"".join(b"250-" + e + b"\r\n" for e in ext[:-1]) + b"250 " + ext[-1] + b"\r\n")
            elif verb == b"HELO":
                p.send(b"250 mini.test\r\n")
            elif verb == b"AUTH":
                self._auth(p, line)
            elif verb == b"MAIL":
                p.send(self.mail_reply)
                if self.mail_reply.startswith(b"421"):
                    return
            elif verb == b"RCPT":
                p.send(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                p.send(b"354 go ahead\r\n")
                if not self._data(p):
                    return
            elif verb in (b"RSET", b"NOOP"):
                p.send(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                p.send(b"221 2.0.0 bye\r\n")
                return
            else:
                p.send(b"500 5.5.1 unknown command\r\n")

    def _data(self, p: Peer) -> bool:
        if self.data_fault == "reset":
            while not p.buf:
                data = p.recv_some()
                if data is None:
                    return False
                p.buf += data
            p.reset()
            return False
        while True:
            line = p.recv_line(limit=1 << 30)
            if line is None:
                return False
            if line == b".":
                break
        if self.data_fault == "stall":
            p.drain()
            return False
        with self.lock:
            self.messages += 1
        return p.send(b"250 2.0.0 queued\r\n")

    def _check(self, user: str, password: str) -> bool:
        ok = self.auth == (user, password)
        with self.lock:
            if ok:
                self.auth_ok += 1
            else:
                self.auth_bad += 1
        return ok

    def _auth(self, p: Peer, line: bytes) -> None:
        parts = line.split()
        mech = parts[1].upper() if len(parts) > 1 else b""
        if not self.auth or mech not in (b"PLAIN", b"LOGIN"):
            p.send(b"504 5.5.4 mechanism not supported\r\n")
            return
        try:
            if mech == b"PLAIN":
                token = parts[2] if len(parts) > 2 else None
                if token is None:
                    p.send(b"334 \r\n")
                    token = p.recv_line()
                    if token is None:
                        return
                _, user, password = base64.b64decode(token).decode().split("\0")
            else:
                p.send(b"334 VXNlcm5hbWU6\r\n")
                u = p.recv_line()
                if u is None:
                    return
                p.send(b"334 UGFzc3dvcmQ6\r\n")
                pw = p.recv_line()
                if pw is None:
                    return
                user, password = base64.b64decode(u).decode(), base64.b64decode(pw).decode()
        except (ValueError, UnicodeDecodeError):
            p.send(b"501 5.5.2 cannot decode\r\n")
            return
        if self._check(user, password):
            p.send(b"235 2.7.0 authenticated\r\n")
        else:
            p.send(b"535 5.7.8 bad credentials\r\n")


def hangs_up_after_greeting(p: Peer) -> None:
    """Greets, reads EHLO, and closes (FIN) instead of answering."""
    p.send(b"220 rude.test ESMTP\r\n")
    p.recv_line()


def refuses_mail_temporarily(p: Peer) -> None:
    """Answers every MAIL with 451 (the session carries on)."""
    MiniSMTP(mail_reply=b"451 4.3.0 try again later\r\n")(p)


def shutdown_421(p: Peer) -> None:
    """Greets and answers EHLO, then 421 to MAIL and hangs up."""
    MiniSMTP(mail_reply=b"421 4.3.2 shutting down, try later\r\n")(p)


def reset_in_data(p: Peer) -> None:
    """A normal server that resets the connection once message data arrives."""
    MiniSMTP(data_fault="reset")(p)


def tls_context_pair() -> tuple[ssl.SSLContext, str]:
    """A server context with a trustme certificate for 127.0.0.1, and the CA file (PEM text)."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    return server, ca.cert_pem.bytes().decode()


# ------------------------------------------------------------------ the CLI under test


def _register_modules() -> list[str]:
    names = []
    for mod in ("smtpbench.load.cli", "smtpbench.conform.cli", "smtpbench.sink.cli"):
        try:
            importlib.import_module(mod)
        except ImportError:
            continue
        names.append(mod)
    return names


def full_cli_available() -> bool:
    """True once ``python -m smtpbench`` imports (every sub-command exists)."""
    return len(_register_modules()) == 3


_APP: list[typer.Typer] = []


def make_app() -> typer.Typer:
    """The CLI app: the real ``smtpbench.cli.app`` once every sub-command imports.

    Until then, a stand-in with the same layout and whichever sub-commands exist.
    """
    if _APP:
        return _APP[0]
    if full_cli_available():
        from smtpbench import cli

        cli._register_all()  # main() does this at start-up; once per process
        _APP.append(cli.app)
        return cli.app
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

    @app.callback()
    def _root() -> None:
        """smtpbench (test build)."""

    for name in _register_modules():
        importlib.import_module(name).register(app)
    return app


_STOPGAP = (
    "import sys; sys.path.insert(0, {root!r}); from tests.hostile import make_app; make_app()(prog_name='smtpbench')"
)


def cli_argv() -> list[str]:
    """The command line that starts smtpbench in a subprocess."""
    if full_cli_available():
        return [sys.executable, "-m", "smtpbench"]
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-c", _STOPGAP.format(root=root)]


# ------------------------------------------------------------------ profiles and results


def write_profile(
    directory: str,
    target: str,
    *,
    name: str = "profile.toml",
    duration: str = "1.5s",
    grace: str = "1s",
    timeout: str = "0.5s",
    sessions: int = 2,
    tls: str = "none",
    target_extra: str = "",
    extra: str = "",
) -> str:
    """A small closed-model profile against ``target`` (HOST:PORT) with short timeouts; returns its path."""
    import os

    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    keys = ", ".join(
        f'{k} = "{timeout}"'
        for k in ("connect", "banner", "ehlo", "tls", "auth", "mail", "rcpt", "data", "data_block", "data_end")
    )
    text = f"""
[target]
host = "{host}"
port = {port}
tls = "{tls}"
{target_extra}

[smtp.timeouts]
{keys.replace(", ", chr(10))}
quit = "{timeout}"
other = "{timeout}"

[workload]
model = "closed"
sessions = {sessions}
duration = "{duration}"
grace = "{grace}"
seed = 7

[message]
size = "1KiB"
variants = 2

[output]
results_dir = "{os.path.join(directory, "results")}"
progress = "none"
interval = "0.25s"
{extra}
"""
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def only_run_dir(directory: str) -> str:
    """The single ``results/<run-id>`` folder under ``directory``."""
    import os

    base = os.path.join(directory, "results")
    runs = sorted(os.listdir(base))
    assert len(runs) == 1, runs
    return os.path.join(base, runs[0])
