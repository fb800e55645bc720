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

PASSWORD_ENV = "SMTPBENCH_PASSWORD"  # also in conform.section, which imports pydantic


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
    """``[target]`` (raw) and the keys given in ``[conform]`` (validated) of a TOML profile.

    Other sections belong to ``smtpbench run`` and are not looked at here.
    """
    from pydantic import ValidationError

    from smtpbench.conform.section import ConformSection
    from smtpbench.fields import config_error

    data = load_toml(path)
    target = data.get("target", {})
    if not isinstance(target, dict):
        raise ConfigError("must be a table", file=str(path), key="target", expected="[target]")
    section = data.get("conform", {})
    # [conform.expect] (waivers) is plain data for conform/waivers.py, which validates it against the check ids.
    expect = section.pop("expect", None) if isinstance(section, dict) else None
    try:
        conform = ConformSection.model_validate(section)
    except ValidationError as exc:
        raise config_error(exc, str(path), ("conform",)) from None
    values = conform.model_dump(exclude_unset=True)
    if expect is not None:
        values["expect"] = expect
    return target, values


def _cli_values(cli: dict[str, Any]) -> dict[str, Any]:
    """The command-line values given (``None``, ``()`` and ``False`` mean not given), validated like the profile's."""
    from pydantic import ValidationError

    from smtpbench.conform.section import ConformSection
    from smtpbench.fields import config_error

    given = {k: v for k, v in cli.items() if v is not None and v != () and v is not False}
    try:
        return ConformSection.model_validate(given).model_dump(exclude_unset=True)
    except ValidationError as exc:
        err = config_error(exc, None)
        err.key = "--" + (err.key or "").split(".")[0].replace("_", "-")
        raise err from None


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
        if tsec.get("protocol") == "lmtp":  # the checks are SMTP's (RFC 5321), not LMTP's
            hint = 'give conform an SMTP server (HOST:PORT or a profile without protocol = "lmtp")'
            raise ConfigError(
                "smtpbench conform checks SMTP servers, not LMTP", file=target, key="target.protocol", hint=hint
            )
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
    merged.update(_cli_values(cli))
    if merged.get("starttls") and merged.get("tls"):
        raise ConfigError("--starttls and --tls exclude each other", key="--tls")
    timeout = merged.get("timeout", 10.0)
    check_timeout = float(merged.get("check_timeout", max(60.0, timeout * 6)))
    for key in ("ca_file", "store_dir"):
        exists = Path.is_file if key == "ca_file" else Path.is_dir
        if merged.get(key) and not exists(Path(merged[key])):
            raise ConfigError(f"{merged[key]!r} does not exist", key=f"--{key.replace('_', '-')}")
    ca_file, store_dir, helo = merged.get("ca_file"), merged.get("store_dir"), merged.get("helo")
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
        only=merged.get("only", ()),
        skip=merged.get("skip", ()),
        slow=bool(merged.get("slow", False)),
        timeout=timeout,
        check_timeout=check_timeout,
        concurrency=merged.get("concurrency", 1),
        json_path=merged.get("json_path"),
        junit_path=merged.get("junit"),
        transcript_dir=merged.get("transcript"),
        store_dir=store_dir,
        quiet=bool(merged.get("quiet", False)),
        baseline=merged.get("baseline"),
        expect=merged.get("expect", {}),
    )
    if merged.get("foreign_rcpt"):
        opts.foreign_rcpt = merged["foreign_rcpt"]
    return opts
