"""What every session of a run shares: :class:`SessionSettings`, fixed before the first session starts.

Kept apart from :mod:`smtpbench.load.session` (which re-exports it) so that every
module of a session (session, opening, transaction, lifecycle) can use it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smtpbench.delivery.ids import MessageIds
from smtpbench.delivery.tracker import Tracker
from smtpbench.load.extensions import MessageExtensions
from smtpbench.load.messages import AddressTemplate
from smtpbench.protocol.replies import ReplyCache

if TYPE_CHECKING:  # built by the engine from the profile (smtpbench.load.proxy imports pydantic)
    from smtpbench.load.proxy import Announcer
    from smtpbench.load.tls_sessions import SavedSessions


@dataclass
class SessionSettings:
    """Everything a session needs, fixed for the run."""

    host: str
    port: int
    helo: str
    timeouts: dict[str, float]
    pipelining: str = "auto"  # auto | on | off
    pipeline_data: bool = True  # message data in the same write as the next envelope
    tls: str = "none"  # none | starttls | implicit
    ssl_context: ssl.SSLContext | None = None
    #: The name sent as SNI and verified: None for target.host, "" for none ([target.tls_options] sni).
    sni: str | None = None
    #: TLS sessions saved for resumption ([target.tls_options] resume > 0), else None.
    tls_sessions: SavedSessions | None = None
    auth_mechanism: str | None = None
    #: (user, password or token) pairs; a session uses one (smtpbench.load.auth.account).
    auth_credentials: tuple[tuple[str, str], ...] = ()
    messages_per_session: int = 1
    recipients_min: int = 1
    recipients_max: int = 1
    sender: AddressTemplate = field(default_factory=lambda: AddressTemplate("sender@smtpbench.example"))
    recipient: AddressTemplate = field(default_factory=lambda: AddressTemplate("user@example.test"))
    think_time: float = 0.0  # pause between the messages of a session
    chunking: str = "off"  # RFC 3030 BDAT: auto | on | off
    #: LMTP (RFC 2033) instead of SMTP: LHLO, and one reply per accepted recipient after the data.
    lmtp: bool = False
    extensions: MessageExtensions = field(default_factory=MessageExtensions)
    #: Stamps each message with its id (X-Smtpbench-Id, Message-ID); the run's own in the engine.
    ids: MessageIds = field(default_factory=lambda: MessageIds("run"))
    #: Delivery accounting (only when the profile has a [delivery] section).
    tracker: Tracker | None = None
    family: int = 0
    sockaddr: tuple[str, int] | tuple[str, int, int, int] | None = None
    #: Local addresses to bind, taken round-robin by session number (empty: the kernel's choice).
    sources: tuple[tuple[str, int], ...] = ()
    #: The PROXY protocol header each session sends right after connect (None: target.proxy_protocol = "none").
    proxy: Announcer | None = None
    #: Replies parsed so far, shared by every session's parser: the server's banner and EHLO reply are
    #: parsed once per run, not once per connection (replies.ReplyCache: bounded, keyed by exact bytes).
    reply_cache: ReplyCache = field(default_factory=ReplyCache)
