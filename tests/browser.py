"""A real headless Chromium driven over the DevTools protocol (pipe transport, no extra library).

``load_page(path)`` opens a local file in Debian's ``chromium`` and returns
what a user's browser would see and do: console errors and exceptions, every
network request the page made, the values of a JavaScript expression, and a
PNG screenshot.  Chromium is started with ``--remote-debugging-pipe``: it
reads NUL-terminated JSON commands on fd 3 and writes replies and events on
fd 4.  Every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
]
TIMEOUT = 60.0


@dataclass
class PageResult:
    """What loading a page produced."""

    requests: list[str] = field(default_factory=list)  # every URL the page asked for (the page itself included)
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log entries of level error
    value: Any = None  # the evaluated expression
    png: bytes = b""


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd = proc, write_fd
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        threading.Thread(target=self._reader, args=(read_fd,), daemon=True).start()

    def _reader(self, fd: int) -> None:
        buf = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self.messages.put(json.loads(raw))

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + TIMEOUT
        while True:
            ev = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(ev)
            if ev.get("method") == method:
                return ev


def load_page(path: Path, expression: str, width: int = 1200, height: int = 1400) -> PageResult:
    """Open ``path`` in headless Chromium; return requests, errors, ``expression``'s value and a screenshot."""
    assert CHROMIUM, "chromium is not installed (.ci/run installs it)"
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 carries its replies
        a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 100)
        b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 100)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory() as profile_dir:
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            preexec_fn=fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        pipe = _Pipe(proc, to_child_w, from_child_r)
        try:
            return _drive(pipe, path, expression, width, height)
        finally:
            with contextlib.suppress(RuntimeError, queue.Empty, OSError):
                pipe.call("Browser.close")
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
            os.close(to_child_w)
            os.close(from_child_r)


def _drive(pipe: _Pipe, path: Path, expression: str, width: int, height: int) -> PageResult:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session=session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    pipe.events.clear()
    pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    pipe.wait_event("Page.loadEventFired")
    out = PageResult()
    value = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    out.value = value.get("result", {}).get("value")
    # A quarter-scale shot of the viewport keeps the pure-Python PNG decoding below quick.
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 0.25}
    shot = pipe.call("Page.captureScreenshot", {"format": "png", "clip": clip}, session=session)
    out.png = base64.b64decode(shot["data"])
    time.sleep(0.2)  # late events (a lazy request, a console error in a timer) still arrive
    try:
        while True:
            pipe.events.append(pipe.messages.get_nowait())
    except queue.Empty:
        pass
    for ev in pipe.events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif m == "Runtime.exceptionThrown":
            out.errors.append(json.dumps(p.get("exceptionDetails", {}))[:300])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.errors.append(json.dumps(p.get("args", []))[:300])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.errors.append(p["entry"].get("text", ""))
    return out


def png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes): width, height, rows of raw pixels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows
