"""Builds a run's :class:`~smtpbench.load.settings.SessionSettings` from its profile (kept out of the engine)."""

from __future__ import annotations

from smtpbench.load.messages import AddressTemplate
from smtpbench.load.profile import Profile
from smtpbench.load.proxy import Announcer
from smtpbench.load.settings import SessionSettings
from smtpbench.load.sources import bind_addresses, family_of
from smtpbench.load.split import Part
from smtpbench.load.tls_section import TlsOptions
from smtpbench.load.tls_sessions import SavedSessions
from smtpbench.net.tls import client_context


def session_settings(profile: Profile, host: str, port: int, part: Part) -> SessionSettings:
    """What every session of the run shares, built from ``profile`` for the resolved target ``host:port``.

    ``part`` numbers the run's messages and sessions (a shard or worker's share).  The TLS context is
    made here, once: a bad CA file fails before any traffic.
    """
    t = profile.target
    ssl_context = None
    opts = t.tls_options or TlsOptions()
    if t.tls != "none":
        ssl_context = client_context(t.ca_file, t.insecure, opts.min_version, opts.max_version)
    auth = t.auth
    return SessionSettings(
        host=host,
        port=port,
        helo=t.helo,
        timeouts=dict(profile.smtp.timeouts),
        pipelining=profile.smtp.pipelining,
        pipeline_data=profile.smtp.pipeline_data,
        chunking=profile.smtp.chunking,
        lmtp=t.protocol == "lmtp",
        tls=t.tls,
        ssl_context=ssl_context,
        sni=opts.sni,
        tls_sessions=SavedSessions(opts.resume) if ssl_context is not None and opts.resume > 0 else None,
        auth_mechanism=auth.mechanism if auth else None,
        auth_credentials=tuple(auth.credentials()) if auth else (),
        messages_per_session=profile.workload.messages_per_session,
        recipients_min=profile.message.recipients_min,
        recipients_max=profile.message.recipients_max,
        sender=AddressTemplate(profile.message.from_template, part),
        recipient=AddressTemplate(profile.message.to_template, part),
        think_time=profile.workload.think_time,
        # The sources' family: a target name is resolved in it (check_target_family did literals).
        family=family_of(t.source_addresses) if t.source_addresses else 0,
        sources=bind_addresses(t.source_addresses) if t.source_addresses else (),
        proxy=Announcer(t.proxy_protocol, t.proxy_sources, part) if t.proxy_sources else None,
    )
