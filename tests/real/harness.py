"""Process, wait, TLS and delivery plumbing shared by the real-MTA starters (see servers.py)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where install.sh unpacked Exim, OpenSMTPD and Dovecot (dpkg -x).
REAL_ROOT = Path(os.environ.get("SMTPBENCH_REAL_ROOT", "/var/cache/smtpbench-real/root"))
LOCAL_DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
#: Generous on a loaded 2-core machine: Postfix's start-up checks take ~2 s there.
START_TIMEOUT = 45.0
STOP_TIMEOUT = 20.0


class Unavailable(Exception):
    """The server cannot be provided on this machine (the message says why and how to fix it)."""


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> set[int]:
    """All live processes below ``pid`` in the process tree (not ``pid`` itself)."""
    kids = _children_map()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` seconds pass (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within a second."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class TlsFiles:
    """A server certificate (chain first) and key in PEM files, and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


def make_tls_files(directory: Path, hostname: str = HOSTNAME) -> TlsFiles:
    """Issue a trustme certificate for ``hostname``/127.0.0.1 and write it, its key and its CA under ``directory``.

    RSA keys: OpenSMTPD 6.8's privilege-separated signing fails on ECDSA keys with OpenSSL 3 ("EVP lib").
    """
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert(hostname, "127.0.0.1", key_type=trustme.KeyType.RSA)
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    files.cert.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    files.key.write_bytes(cert.private_key_pem.bytes())
    files.key.chmod(0o600)
    files.ca.write_bytes(ca.cert_pem.bytes())
    return files


@dataclass
class RealServer:
    """A running MTA: where it listens, its log, its deliveries, and how to stop it."""

    name: str
    host: str
    port: int
    workdir: Path
    log_path: Path
    #: Delivery root: every message lands in a maildir below it (``.../new/``); see :meth:`delivered`.
    maildir: Path
    tls: TlsFiles | None = None
    proc: subprocess.Popen[bytes] | None = None
    stop_command: list[str] | None = None
    #: Extra files whose text :meth:`log_text` appends (e.g. the daemon's stderr).
    extra_logs: list[Path] = field(default_factory=list)
    #: Helper servers this one depends on (e.g. Dovecot's auth service for Postfix's SASL): stopped after it.
    companions: list[RealServer] = field(default_factory=list)
    _release: Callable[[], None] | None = None
    _stopped: bool = False

    @property
    def address(self) -> str:
        """``host:port``, as the smtpbench CLI takes it."""
        return f"{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything the server logged so far (its mail log, then its stderr), as text."""
        parts = []
        for path in [self.log_path, *self.extra_logs]:
            try:
                parts.append(path.read_text(errors="replace"))
            except OSError:
                continue
        return "".join(parts)

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[str]:
        """Wait until the log has ``count`` lines matching the regex ``pattern``; returns the matching lines."""
        rx = re.compile(pattern)

        def lines() -> list[str]:
            found = [line for line in self.log_text().splitlines() if rx.search(line)]
            return found if len(found) >= count else []

        return list(wait_until(lines, timeout, f"{count} x /{pattern}/ in the {self.name} log"))

    def delivered(self, local: str | None = None) -> list[bytes]:
        """The messages delivered so far, oldest first; with ``local``, only those for ``local@example.test``.

        A message's recipient is read from its delivery trace header (``Delivered-To:``, which Postfix and
        OpenSMTPD add, or Exim's ``Envelope-to:``) or, for per-user maildirs (Dovecot, which omits
        ``Delivered-To:`` on a copy shared by several recipients), from the directory ``maildir/<local>/``.
        """
        files = [p for p in self.maildir.rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        if local is None:
            return [p.read_bytes() for p in files]
        rx = re.compile(
            rb"^(?:Delivered-To|Envelope-to|X-Original-To):[ \t]*<?"
            + re.escape(f"{local}@{LOCAL_DOMAIN}".encode())
            + rb">?\s*$",
            re.I | re.M,
        )
        found = []
        for path in files:
            data = path.read_bytes()
            header = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
            if path.relative_to(self.maildir).parts[0] == local or rx.search(header):
                found.append(data)
        return found

    def wait_delivered(self, count: int, timeout: float = 30.0, local: str | None = None) -> list[bytes]:
        """Wait until at least ``count`` messages were delivered; returns them all."""
        return list(
            wait_until(
                lambda: msgs if len(msgs := self.delivered(local)) >= count else [],
                timeout,
                f"{count} message(s) delivered by {self.name} into {self.maildir}",
            )
        )

    def stop(self) -> None:
        """Stop the server and every process it started (bounded waits; SIGKILL as the last resort). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            procs: set[int] = set()
            if self.proc is not None:
                procs = descendants(self.proc.pid) | {self.proc.pid}
            if self.stop_command:
                subprocess.run(self.stop_command, capture_output=True, timeout=STOP_TIMEOUT, check=False)
            elif self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            if self.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=STOP_TIMEOUT)
                procs |= descendants(self.proc.pid)
            # Children exit on their own shortly after their master; anything still there then is killed.
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not any(alive(p) for p in procs), 5.0, f"{self.name} children to exit")
            for pid in procs:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if self.proc is not None and self.proc.poll() is None:
                self.proc.wait(timeout=STOP_TIMEOUT)
            wait_until(lambda: not any(alive(p) for p in procs), STOP_TIMEOUT, f"{self.name} processes to exit")
        finally:
            if self._release:
                self._release()
            for companion in self.companions:
                companion.stop()

    def remove(self) -> None:
        """Delete the working directory, and the companions' (call after :meth:`stop`)."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        for companion in self.companions:
            companion.remove()


def make_workdir(name: str) -> Path:
    # Short paths: Postfix and OpenSMTPD put Unix sockets under it (108-byte limit).
    path = Path(tempfile.mkdtemp(prefix=f"sb-{name}-", dir="/tmp"))
    path.chmod(0o755)
    return path


def system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise Unavailable(f"system user {name!r} is missing: run tests/real/install.sh as root") from None


def require_root() -> None:
    if os.geteuid() != 0:
        raise Unavailable("the real MTAs need root (they switch to their own users): run the tests as root")


def launch(server: RealServer, argv: list[str], output: Path) -> RealServer:
    """Run the server's foreground daemon ``argv`` (stdout and stderr into ``output``), own it, and wait until it
    listens.  If it exits first (RuntimeError, with its log) or does not listen within START_TIMEOUT
    (TimeoutError), everything is stopped and removed first: a server that is installed but cannot start is a
    failure, not a skip."""
    with open(output, "wb") as out:
        # A session of its own: the daemon and its children never get the test runner's signals.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    server.proc = proc

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {proc.returncode} while starting:\n{server.log_text()[-3000:]}"
            )
        return port_open(server.host, server.port)

    try:
        wait_until(ready, START_TIMEOUT, f"{server.name} to listen on {server.address}", interval=0.1)
    except BaseException:
        server.stop()
        server.remove()
        raise
    return server
