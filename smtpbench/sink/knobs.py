"""The sink's protocol session: the server role plus the load knobs and delivery.

:class:`SinkConnection` fills in the hooks of
:class:`~smtpbench.protocol.server.ServerConnection`: latency per phase
(accumulated in ``pause``, slept by the I/O layer before it sends the
replies), random RCPT/DATA refusals and dropped connections drawn from a
per-connection generator, and delivery with a ``Received:`` trace line.
The faults of :mod:`smtpbench.sink.faults` are handed to the server role as
its quirks; the few that live in I/O are in :mod:`smtpbench.sink.session`.
"""

from __future__ import annotations

import random
from email.utils import formatdate

from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_lmtp import LMTPMixin
from smtpbench.sink.core import SinkCore
from smtpbench.sink.model import StoredMessage

R_RCPT_TEMP = b"450 4.2.1 Mailbox temporarily unavailable (test knob)\r\n"
R_RCPT_PERM = b"550 5.1.1 Mailbox unavailable (test knob)\r\n"
R_DATA_TEMP = b"451 4.3.0 Error: local error in processing (test knob)\r\n"
R_DATA_PERM = b"554 5.6.0 Error: message rejected (test knob)\r\n"


class SinkConnection(ServerConnection):
    """The protocol state of one sink connection, with the sink's knobs and delivery."""

    def __init__(self, core: SinkCore, peer_ip: str, conn_no: int) -> None:
        cfg = core.config
        super().__init__(core.protocol, core.stats, quirks=cfg.faults, peer_ip=peer_ip)
        self.core = core
        self.sink_config = cfg
        self.delays = core.delays
        #: Seconds of latency owed before the pending replies go out.
        self.pause = 0.0
        self.paced = bool(core.delays)
        self.rng: random.Random | None = None
        if core.randomised:
            self.chancy = True
            self.rng = random.Random(None if cfg.seed is None else cfg.seed * 1_000_003 + conn_no)

    def on_phase(self, phase: str) -> None:
        """Owe the configured latency of ``phase``."""
        seconds = self.delays.get(phase)
        if seconds:
            self.pause += seconds

    def drop_now(self) -> bool:
        """Draw the disconnect knob; True means: close now without replying."""
        cfg = self.sink_config
        if self.rng is not None and cfg.disconnect and self.rng.random() < cfg.disconnect:
            self.core.stats.disconnects_injected += 1
            self.closing = True
            return True
        return False

    def _draw(self, temp: float, perm: float) -> int:
        """0: go ahead, 1: refuse temporarily, 2: refuse permanently; draws only when a ratio is set."""
        if self.rng is None or not (temp or perm):
            return 0
        draw = self.rng.random()
        return 1 if draw < temp else 2 if draw < temp + perm else 0

    def rcpt_refusal(self) -> bytes | None:
        """Draw the RCPT refusal knobs (450 / 550)."""
        kind = self._draw(self.sink_config.reject_rcpt_temp, self.sink_config.reject_rcpt_perm)
        if not kind:
            return None
        self.stats.recipients_rejected += 1
        return R_RCPT_TEMP if kind == 1 else R_RCPT_PERM

    def data_refusal(self) -> bytes | None:
        """Draw the message refusal knobs (451 / 554)."""
        kind = self._draw(self.sink_config.reject_data_temp, self.sink_config.reject_data_perm)
        if kind == 1:
            self.stats.messages_rejected_temp += 1
            return R_DATA_TEMP
        if kind == 2:
            self.stats.messages_rejected_perm += 1
            return R_DATA_PERM
        return None

    def delivery_refusal(self) -> bytes | None:
        """LMTP: draw the message refusal knobs (451 / 554) for one recipient; the server role counts it."""
        kind = self._draw(self.sink_config.reject_data_temp, self.sink_config.reject_data_perm)
        return None if not kind else R_DATA_TEMP if kind == 1 else R_DATA_PERM

    def message_accepted(self, content: bytes | None, via: str) -> str:
        """Number the message and, when content is kept, deliver it."""
        mid = self.core.next_id()
        downstream = self.core.downstream  # blackhole and arrival reports (smtpbench.sink.downstream)
        if (downstream is None or downstream.accept(content, len(self.rcpts), self.rng)) and content is not None:
            self.deliver(content, via, mid)
        return mid

    def deliver(self, content: bytes, via: str, mid: str | None = None) -> None:
        """Store ``content`` with the transaction's envelope and a ``Received:`` line (RFC 5321 4.4)."""
        faults = self.quirks
        mid = mid or self.core.next_id()
        if faults and "B-01" in faults:
            content = bytes(b & 0x7F for b in content)
        if not (faults and "D-01" in faults):
            # RFC 3848's names: ESMTP, LMTP, then S for TLS and A for AUTH.
            proto = {"EHLO": "ESMTP", "LHLO": "LMTP"}.get(self.greeted or "", "SMTP") + ("S" if self.tls else "")
            proto += "A" if self.auth_user else ""
            trace = (
                f"Received: from {self.helo_name or 'unknown'} ({self.peer_literal})\r\n"
                f"\tby {self.config.hostname} (smtpbench-sink) with {proto} id {mid};\r\n"
                f"\t{formatdate(usegmt=True)}\r\n"
            )
            content = trace.encode() + content
        self.core.deliver(
            StoredMessage(
                id=mid,
                mail_from=self.mail_from or "",
                rcpt_to=list(self.rcpts),
                content=content,
                helo=self.helo_name,
                peer=self.peer_ip,
                tls=self.tls,
                auth_user=self.auth_user,
                via=via,
                mail_params=dict(self.mail_params),
            )
        )


class LMTPSinkConnection(LMTPMixin, SinkConnection):
    """A sink connection speaking LMTP (``smtpbench sink --lmtp``): per-recipient replies, knobs per recipient."""
