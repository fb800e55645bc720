"""The [target] section of a profile as pydantic models: the server, its TLS and AUTH, the embedded sink's knobs.

Declared like :mod:`smtpbench.load.sections` (a :class:`~smtpbench.fields.Table` per section, ``key(default,
"description")`` per key, rules between keys in ``_check``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from smtpbench.config import shown
from smtpbench.credentials import TOKEN_ENV, read_secret_file, read_users, token
from smtpbench.errors import ConfigError
from smtpbench.fields import Bool, Duration, EhloName, Invalid, Ratio, Table, Text, checker, choice, derived, key
from smtpbench.load.sections import DEFAULT_HOST, Host, Port, Seed, UpToAnHour
from smtpbench.load.sources import MAX_SOURCE_ADDRESSES, SourceAddresses, check_target_family
from smtpbench.load.tls_section import TlsOptions
from smtpbench.net.tls import ca_file_problem
from smtpbench.protocol import sasl
from smtpbench.units import format_duration

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(_ENV_NAME, value):
        raise Invalid(f"{shown(value)} is not an environment variable name", expected="a name like SMTP_PASSWORD")
    return value


class AuthConfig(Table):
    """SMTP AUTH after EHLO (not with ``embedded``); passwords and tokens themselves are never in the profile."""

    refused = {
        "password": (
            "passwords are never written in a profile",
            "put it in an environment variable (password_env) or a file (password_file)",
        ),
        "token": ("tokens are never written in a profile", f"put it in ${TOKEN_ENV} or a file (token_file)"),
    }
    username: Text | None = key(None, "Account name (not with users_file).")
    mechanism: Annotated[str, choice(*sasl.MECHANISMS)] = key(
        "PLAIN", "SASL mechanism. XOAUTH2 and OAUTHBEARER send a bearer token instead of a password."
    )
    password_env: Annotated[str, checker(_env_name, Annotated[str, Field(pattern=_ENV_NAME)])] | None = key(
        None, "Name of an environment variable holding the password (this, password_file or users_file)."
    )
    password_file: Text | None = key(
        None, "File whose content (trailing newline removed) is the password (this, password_env or users_file)."
    )
    users_file: Text | None = key(
        None,
        "CSV file of username,password rows: each session logs in as one of them, drawn with the seed "
        "(not with username/password_env/password_file; with a token mechanism only the names are used).",
    )
    token_file: Text | None = key(None, f"XOAUTH2/OAUTHBEARER: file holding the bearer token (default: ${TOKEN_ENV}).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        passwords = [n for n in ("password_env", "password_file") if getattr(self, n) is not None]
        clash = [n for n in ("username", *passwords) if getattr(self, n) is not None]
        if self.users_file is not None and clash:
            raise Invalid("users_file names the accounts and their passwords", loc=(clash[0],))
        if self.users_file is None and self.username is None:
            raise Invalid("needs username or users_file", expected='username = "name"', loc=("username",))
        if self.mechanism in sasl.TOKEN_MECHANISMS and passwords:
            hint = f"the bearer token comes from ${TOKEN_ENV} or token_file"
            raise Invalid(f"does not apply to {self.mechanism}", hint=hint, loc=(passwords[0],))
        if self.mechanism not in sasl.TOKEN_MECHANISMS and self.token_file is not None:
            raise Invalid("only applies to XOAUTH2 and OAUTHBEARER", loc=("token_file",))
        if self.mechanism not in sasl.TOKEN_MECHANISMS and self.users_file is None and len(passwords) != 1:
            raise Invalid(
                "needs exactly one of password_env and password_file (or a users_file instead)",
                expected='password_env = "SMTP_PASSWORD" or password_file = "path"',
            )
        return self

    def password(self) -> str:
        """The password, read now from the environment variable or the file (trailing newline removed).

        Raises ConfigError if the variable is unset/empty or the file is missing, unreadable or empty.
        """
        if self.password_env is None:
            assert self.password_file is not None  # guaranteed by validation: exactly one source
            return read_secret_file(self.password_file, "target.auth.password_file")
        if not os.environ.get(self.password_env):
            problem = f"environment variable {self.password_env} is not set or empty"
            raise ConfigError(problem, key="target.auth.password_env")
        return os.environ[self.password_env]

    def credentials(self) -> list[tuple[str, str]]:
        """Every (user, secret) pair sessions may log in with, read now (the secret: password or bearer token).

        Raises ConfigError (exit 2, with the file and line for a bad users file row) when a source is unusable.
        """
        given = self.users_file is not None
        users = read_users(str(self.users_file), "target.auth.users_file") if given else [(str(self.username), "")]
        if self.mechanism in sasl.TOKEN_MECHANISMS:
            bearer = token(self.token_file, "target.auth.token_file")
            return [(name, bearer) for name, _ in users]
        return users if given else [(users[0][0], self.password())]


class SinkDelays(Table):
    """Delays before the embedded sink's replies (at most 1h each)."""

    banner: UpToAnHour | None = key(None, "Before the 220 greeting.")
    ehlo: UpToAnHour | None = key(None, "Before the EHLO reply.")
    mail: UpToAnHour | None = key(None, "Before the MAIL reply.")
    rcpt: UpToAnHour | None = key(None, "Before each RCPT reply.")
    data: UpToAnHour | None = key(None, "Before the 354 reply.")
    data_end: UpToAnHour | None = key(None, "Before the reply to the final dot.")
    quit: UpToAnHour | None = key(None, "Before the 221 reply to QUIT.")


_RATIOS = ("reject_rcpt_temp", "reject_rcpt_perm", "reject_data_temp", "reject_data_perm", "disconnect", "blackhole")


class SinkOptions(Table):
    """Behaviour of the embedded sink (only with ``embedded = true``): ``smtpbench sink`` flags."""

    delay: SinkDelays = key(default_factory=dict, doc="Delays before replies (none by default).")
    reject_rcpt_temp: Ratio = key(0.0, "Ratio of RCPT answered 4xx.")
    reject_rcpt_perm: Ratio = key(0.0, "Ratio of RCPT answered 5xx (temp + perm <= 1).")
    reject_data_temp: Ratio = key(0.0, "Ratio of messages answered 4xx after the final dot.")
    reject_data_perm: Ratio = key(0.0, "Ratio answered 5xx after the final dot (temp + perm <= 1).")
    disconnect: Ratio = key(0.0, "Ratio of commands after which the sink drops the connection.")
    blackhole: Ratio = key(0.0, "Ratio of messages accepted with 250 and then dropped (README, Delivery latency).")
    pause_at: Duration | None = key(None, "Stop answering this long after the sink's start (with pause_for).")
    pause_for: UpToAnHour | None = key(None, "How long a pause lasts (with pause_at; at most 1h).")
    seed: Seed | None = key(None, "Seed of the sink's random choices (default: workload.seed).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for kind in ("rcpt", "data"):
            if getattr(self, f"reject_{kind}_temp") + getattr(self, f"reject_{kind}_perm") > 1.0:
                raise Invalid(
                    f"reject_{kind}_temp + reject_{kind}_perm exceed 1",
                    expected="ratios that add up to at most 1",
                    loc=(f"reject_{kind}_perm",),
                )
        if (self.pause_at is None) != (self.pause_for is None):
            raise Invalid("pause_at and pause_for go together", loc=("pause_at" if self.pause_for else "pause_for",))
        if self.pause_for == 0:
            raise Invalid("a pause of 0 is none", expected="a duration above 0", loc=("pause_for",))
        return self

    def to_cli_args(self) -> list[str]:
        """``smtpbench sink`` arguments reproducing these options: only non-default values, durations as text."""
        flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
        args = [a for name, s in self.delay if s for a in (flag(f"delay_{name}"), format_duration(s))]
        for name in _RATIOS:
            args += [flag(name), repr(getattr(self, name))] if getattr(self, name) > 0 else []
        if self.pause_at is not None and self.pause_for:
            args += ["--pause-at", format_duration(self.pause_at), "--pause-for", format_duration(self.pause_for)]
        return args + (["--seed", str(self.seed)] if self.seed is not None else [])


def _check_lmtp_port(port: int | None) -> None:
    """RFC 2033: LMTP MUST NOT be used on TCP port 25, and it has no port of its own: one must be given."""
    if port is None:
        hint = "LMTP has no standard port (24 and 2003 are common); it must never be 25"
        raise Invalid(
            "LMTP needs an explicit port", expected="port = 24 (or the LMTP server's port)", hint=hint, loc=("port",)
        )
    if port == 25:
        raise Invalid(
            "LMTP must not be used on TCP port 25 (RFC 2033)", expected="the LMTP server's port", loc=("port",)
        )


class TargetConfig(Table):
    """Where the load goes.  With embedded the engine starts a sink and uses its address:
    host is then 127.0.0.1 and port 0 (a free port)."""

    host: Host = key(DEFAULT_HOST, "Server to test (name or IP). Not allowed with embedded.")
    port: Port = derived(25, "TCP port (default 25, 465 with tls = implicit). Not allowed with embedded.")
    helo: EhloName = key(
        "smtpbench.example", "Name sent in EHLO/HELO (LHLO in LMTP): a domain or an address literal like [192.0.2.1]."
    )
    protocol: Annotated[str, choice("smtp", "lmtp")] = key(
        "smtp",
        "smtp, or lmtp (RFC 2033: LHLO, one reply per recipient after the data; needs an explicit port, "
        "never 25; with embedded the sink speaks LMTP).",
    )
    embedded: Bool = key(False, "Start our own sink on 127.0.0.1 (a free port) and test it.")
    tls: Annotated[str, choice("none", "starttls", "implicit")] = key(
        "none", "TLS: none, starttls (upgrade after EHLO) or implicit (TLS from connect)."
    )
    ca_file: Text | None = key(None, "PEM file of CA certificates to verify the server with.")
    insecure: Bool = key(False, "Skip certificate verification (not with ca_file).")
    tls_options: TlsOptions | None = key(None, "TLS versions, SNI and session resumption (only with tls).")
    auth: AuthConfig | None = key(None, "Optional SMTP AUTH after EHLO.")
    sink: SinkOptions = key(default_factory=dict, doc="Embedded sink behaviour.")
    source_addresses: SourceAddresses | None = key(
        None,
        "Local addresses sessions bind to, round-robin (smtpbench run): a list of IPs of the target's family "
        f'or a CIDR like "127.0.0.0/30" (its host addresses, at most {MAX_SOURCE_ADDRESSES}). '
        "Default: the kernel's choice.",
    )
    proxy_protocol: Annotated[str, choice("none", "v1", "v2")] = key(
        "none",
        "PROXY protocol header each session sends right after connect (smtpbench run): none, v1 (text) or v2 "
        "(binary), announcing a client of proxy_sources to a server behind a proxy (Postfix: "
        "smtpd_upstream_proxy_protocol = haproxy).",
    )
    proxy_sources: SourceAddresses | None = key(
        None,
        "The client addresses the PROXY headers announce, round-robin by session number: a list of IPs or a "
        f'CIDR like "198.51.100.0/24" (its host addresses, at most {MAX_SOURCE_ADDRESSES}). Only data in the '
        "header: no packet goes to them. Needed with proxy_protocol.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.proxy_protocol == "none" and self.proxy_sources is not None:
            raise Invalid("only applies with proxy_protocol", hint='set proxy_protocol = "v2"', loc=("proxy_sources",))
        if self.proxy_protocol != "none" and self.proxy_sources is None:
            hint = 'e.g. proxy_sources = "198.51.100.0/24"'
            raise Invalid("needs proxy_sources (the clients to announce)", hint=hint, loc=("proxy_protocol",))
        if self.source_addresses is not None:
            try:
                check_target_family(DEFAULT_HOST if self.embedded else self.host, self.source_addresses)
            except Invalid as exc:
                raise Invalid(exc.problem, expected=exc.expected, loc=("source_addresses",)) from None
        tls_only = {
            "ca_file": self.ca_file is not None,
            "insecure": self.insecure,
            "tls_options": self.tls_options is not None,
        }
        if self.tls == "none" and any(tls_only.values()):
            name = next(n for n, used in tls_only.items() if used)
            raise Invalid(
                'only applies with tls = "starttls" or "implicit"',
                hint="set target.tls or remove this key",
                loc=(name,),
            )
        if self.ca_file is not None and self.insecure:
            hint = "use ca_file to verify, or insecure = true to skip verification"
            raise Invalid("contradicts ca_file", hint=hint, loc=("insecure",))
        if self.tls_options is not None and self.tls_options.sni == "" and not self.insecure:
            hint = "give the name to verify, or set insecure = true to skip verification"
            raise Invalid(
                "no SNI leaves no name to verify the certificate against", hint=hint, loc=("tls_options", "sni")
            )
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise Invalid(f"file {shown(self.ca_file, 80)} not found", expected="a PEM file", loc=("ca_file",))
        if self.ca_file is not None and (problem := ca_file_problem(self.ca_file)):
            raise Invalid(problem, expected="a PEM file of CA certificates", loc=("ca_file",))
        if not self.embedded:
            if self.given("sink"):
                hint = "set target.embedded = true or remove [target.sink]"
                raise Invalid("only applies with embedded = true", hint=hint, loc=("sink",))
            if self.protocol == "lmtp":
                _check_lmtp_port(self.port if self.given("port") else None)
            if not self.given("port"):
                self.port = 465 if self.tls == "implicit" else 25
            return self
        for name in [n for n in ("host", "port") if self.given(n)]:
            problem = "is not allowed with embedded = true (the embedded sink listens on a free local port)"
            raise Invalid(problem, hint="remove it, or set embedded = false to test an external server", loc=(name,))
        if self.tls != "none":
            expected = '"none" with embedded = true'
            raise Invalid("the embedded sink speaks plain SMTP only", expected=expected, loc=("tls",))
        if self.auth is not None:
            hint = "remove [target.auth] or set embedded = false"
            raise Invalid("the embedded sink does not authenticate", hint=hint, loc=("auth",))
        self.host, self.port = DEFAULT_HOST, 0
        return self

    def inapplicable(self) -> set[str]:
        """No sink unless embedded, no host, port, TLS or auth with it; no insecure without TLS."""
        skip = {"host", "port", "ca_file", "insecure", "auth"} if self.embedded else {"sink"}
        return skip | ({"insecure"} if self.tls == "none" else set())
