"""Building :class:`ConformOptions` from the command line and an optional profile.

``smtpbench conform HOST[:PORT]`` or ``smtpbench conform profile.toml``; in a
profile, the ``[conform]`` section takes the long option names as keys
(dashes or underscores) and ``[target]`` may give ``host``/``port``.  Command
line values win over the profile.  Every problem is a :class:`ConfigError`
(one line, exit 2).  The password comes only from ``SMTPBENCH_PASSWORD`` or a
password file: never from the command line or the profile itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpbench.config import load_toml
from smtpbench.conform.options import DEFAULT_PORT, ConformOptions
from smtpbench.errors import ConfigError

PASSWORD_ENV = "SMTPBENCH_PASSWORD"

#: Profile keys of ``[conform]`` and the type each must have.
PROFILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "starttls": bool,
    "tls": bool,
    "ca_file": str,
    "insecure": bool,
    "user": str,
    "password_file": str,
    "rcpt": str,
    "foreign_rcpt": str,
    "helo": str,
    "sender": str,
    "only": (str, list),
    "skip": (str, list),
    "slow": bool,
    "timeout": (int, float),
    "check_timeout": (int, float),
    "concurrency": int,
    "json": str,
    "junit": str,
    "transcript": str,
    "store_dir": str,
    "quiet": bool,
    # The CI gate (parsed by conform/waivers.py, which takes the plain table).
    "baseline": str,
    "expect": dict,
}


def parse_target(text: str, source: str = "TARGET") -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> ``(host, port)``."""
    text = text.strip()
    if not text:
        raise ConfigError("empty target", key=source, expected="HOST[:PORT]")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"unclosed '[' in {text!r}", key=source, expected="[IPv6]:PORT")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"unexpected {rest!r} after ']'", key=source, expected="[IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ConfigError(f"no host in {text!r}", key=source, expected="HOST[:PORT]")
    return host, parse_port(port_text, source) if port_text else DEFAULT_PORT


def parse_port(value: object, source: str) -> int:
    """A TCP port number 1-65535."""
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"port {value!r} is not a number", key=source, expected="1-65535") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} out of range", key=source, expected="1-65535")
    return port


def load_profile(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``[target]`` and ``[conform]`` from a TOML profile (other sections belong to other commands)."""
    # The one profile reader of the project: syntax errors come with line and column.
    data = load_toml(path)
    target = data.get("target", {})
    conform = data.get("conform", {})
    for name, section in (("target", target), ("conform", conform)):
        if not isinstance(section, dict):
            raise ConfigError("must be a table", file=str(path), key=name, expected=f"[{name}]")
    conform = {k.replace("-", "_"): v for k, v in conform.items()}
    for key, value in conform.items():
        if key == "password":
            raise ConfigError(
                "a password may not be stored in a profile",
                file=str(path),
                key="conform.password",
                hint=f"use password_file or the {PASSWORD_ENV} environment variable",
            )
        if key not in PROFILE_KEYS:
            raise ConfigError(
                f"unknown key {key!r}", file=str(path), key="conform", expected=", ".join(sorted(PROFILE_KEYS))
            )
        want = PROFILE_KEYS[key]
        if isinstance(value, bool) and want in (int, (int, float)) or not isinstance(value, want):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ConfigError(
                f"wrong type {type(value).__name__}", file=str(path), key=f"conform.{key}", expected=names
            )
    return target, conform


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


def read_password(password_file: str | None) -> str | None:
    """The password from ``password_file`` (first line) or ``$SMTPBENCH_PASSWORD``; ``None`` when neither is set."""
    if password_file:
        try:
            text = Path(password_file).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read password file: {exc.strerror}", key="--password-file") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise ConfigError("password file is empty", key="--password-file")
        return password
    return os.environ.get(PASSWORD_ENV) or None


def build_options(target: str, cli: dict[str, Any]) -> ConformOptions:
    """Merge the profile (when ``target`` is a ``.toml`` file) and the CLI values (``None`` = not given).

    Guarantees a fully validated :class:`ConformOptions` or a :class:`ConfigError`.
    """
    merged: dict[str, Any] = {}
    host: str | None = None
    port: int | None = None
    path = Path(target)
    if target.endswith(".toml") or path.is_file():
        tsec, merged = load_profile(path)
        if "host" in tsec:
            if not isinstance(tsec["host"], str):
                raise ConfigError("must be a string", file=target, key="target.host", expected="a host name")
            host, port = parse_target(tsec["host"], "target.host")
        if "port" in tsec:
            port = parse_port(tsec["port"], "target.port")
        if host is None:
            raise ConfigError("the profile names no target", file=target, key="target.host", expected="HOST[:PORT]")
    else:
        host, port = parse_target(target)
    for key, value in cli.items():
        if value is not None and value != () and value is not False:
            merged[key] = value
    if merged.get("starttls") and merged.get("tls"):
        raise ConfigError("--starttls and --tls exclude each other", key="--tls")
    timeout = float(merged.get("timeout", 10.0))
    if not 0 < timeout <= 600:
        raise ConfigError(f"timeout {timeout:g} out of range", key="--timeout", expected="0 < seconds <= 600")
    check_timeout = float(merged.get("check_timeout", max(60.0, timeout * 6)))
    concurrency = int(merged.get("concurrency", 1))
    if not 1 <= concurrency <= 16:
        raise ConfigError(f"concurrency {concurrency} out of range", key="--concurrency", expected="1-16")
    ca_file = merged.get("ca_file")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"CA file {ca_file!r} does not exist", key="--ca-file")
    for key in ("rcpt", "foreign_rcpt", "sender"):
        value = merged.get(key)
        if value is not None and ("@" not in value or any(c in value for c in "<>\r\n ")):
            raise ConfigError(f"{value!r} is not a mailbox", key=f"--{key.replace('_', '-')}", expected="local@domain")
    store_dir = merged.get("store_dir")
    if store_dir and not Path(store_dir).is_dir():
        raise ConfigError(f"store directory {store_dir!r} does not exist", key="--store-dir")
    helo = merged.get("helo")
    if helo is not None and (not helo or any(c in helo for c in " \r\n")):
        raise ConfigError(f"{helo!r} is not a domain", key="--helo")
    opts = ConformOptions(
        host=host,
        port=port or DEFAULT_PORT,
        tls="implicit" if merged.get("tls") else "starttls" if merged.get("starttls") else "none",
        ca_file=ca_file,
        insecure=bool(merged.get("insecure", False)),
        user=merged.get("user"),
        password=read_password(merged.get("password_file")),
        rcpt=merged.get("rcpt"),
        helo=helo or ConformOptions.helo,
        sender=merged.get("sender"),
        only=_names(merged.get("only")),
        skip=_names(merged.get("skip")),
        slow=bool(merged.get("slow", False)),
        timeout=timeout,
        check_timeout=check_timeout,
        concurrency=concurrency,
        json_path=merged.get("json"),
        junit_path=merged.get("junit"),
        transcript_dir=merged.get("transcript"),
        store_dir=store_dir,
        quiet=bool(merged.get("quiet", False)),
        baseline=merged.get("baseline"),
        expect=dict(merged.get("expect", {})),
    )
    if merged.get("foreign_rcpt"):
        opts.foreign_rcpt = merged["foreign_rcpt"]
    return opts
