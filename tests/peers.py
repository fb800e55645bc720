"""Third-party SMTP peers for tests: aiosmtpd in-process on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CountingHandler:
    """aiosmtpd handler that counts what it received and can delay its DATA reply."""

    data_delay: float = 0.0
    messages: int = 0
    recipients: int = 0
    sizes: list[int] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        self.sizes.append(len(envelope.content))
        return "250 2.0.0 OK"


@contextmanager
def aiosmtpd_server(handler: Any | None = None, **kwargs: Any) -> Iterator[tuple[Controller, Any]]:
    """Run aiosmtpd on 127.0.0.1 (free port) in its own thread; yields (controller, handler)."""
    handler = handler or CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()
