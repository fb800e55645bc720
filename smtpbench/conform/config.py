"""Building :class:`ConformOptions` from the command line and an optional profile.

``smtpbench conform HOST[:PORT]`` or ``smtpbench conform profile.toml``: ``[conform]`` takes the long option names
as keys (dashes or underscores), ``[target]`` may give ``host``/``port``; command-line values win.  Every problem
is a one-line :class:`ConfigError` (exit 2).  The password comes only from ``SMTPBENCH_PASSWORD`` or a password
file: never from the command line or the profile itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smtpbench.config import load_toml
from smtpbench.conform.options import DEFAULT_PORT, PASSWORD_ENV, ConformOptions
from smtpbench.errors import ConfigError
from smtpbench.net.tls import ca_file_problem
from smtpbench.units import parse_host_port

_FIELD_OF = {"junit": "junit_path", "transcript": "transcript_dir"}  # [conform] key -> ConformOptions field


def parse_target(text: str, source: str = "TARGET") -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> ``(host, port)``, port 25 by default."""
    return parse_host_port(text, source, default_port=DEFAULT_PORT)


def _validated(values: dict[str, Any], file: str | None) -> dict[str, Any]:
    """The keys of ``values`` checked by the ``[conform]`` model; its error names the profile key or the --option."""
    from pydantic import ValidationError

    from smtpbench.conform.section import ConformSection
    from smtpbench.fields import config_error

    try:
        return ConformSection.model_validate(values).model_dump(exclude_unset=True)
    except ValidationError as exc:
        err = config_error(exc, file, ("conform",) if file else ())
        err.key = err.key if file else "--" + (err.key or "").split(".")[0].replace("_", "-")
        raise err from None


def _profile(file: str) -> tuple[str, int, dict[str, Any]]:
    """The target and the ``[conform]`` keys of a profile (its other sections belong to ``smtpbench run``)."""
    data = load_toml(file)
    target, section = data.get("target", {}), data.get("conform", {})
    if not isinstance(target, dict):
        raise ConfigError("must be a table", file=file, key="target", expected="[target]")
    # [conform.expect] (waivers) is plain data for conform/waivers.py, which validates it against the check ids.
    expect = section.pop("expect", None) if isinstance(section, dict) else None
    values = _validated(section, file) | ({"expect": expect} if expect is not None else {})
    if target.get("protocol") == "lmtp":  # the checks are SMTP's (RFC 5321), not LMTP's
        hint = 'give conform an SMTP server (HOST:PORT or a profile without protocol = "lmtp")'
        raise ConfigError(
            "smtpbench conform checks SMTP servers, not LMTP", file=file, key="target.protocol", hint=hint
        )
    if target.get("embedded") is True and "host" not in target:
        hint = "start one with smtpbench sink --port 2525 and check it with smtpbench conform 127.0.0.1:2525"
        raise ConfigError("conform does not start an embedded sink", file=file, key="target.embedded", hint=hint)
    if "host" not in target:
        raise ConfigError("the profile names no target", file=file, key="target.host", expected="HOST[:PORT]")
    if not isinstance(target["host"], str):
        raise ConfigError("must be a string", file=file, key="target.host", expected="a host name")
    host, port = parse_target(target["host"], "target.host")
    if "port" in target:
        text = str(target["port"]).strip()
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            problem = f"port {target['port']!r} is {'out of range' if text.isdigit() else 'not a number'}"
            raise ConfigError(problem, file=file, key="target.port", expected="1-65535")
        port = int(text)
    return host, port, values


def read_password(password_file: str | None) -> str | None:
    """The password from ``password_file`` (first line) or ``$SMTPBENCH_PASSWORD``; ``None`` when neither is set."""
    if not password_file:
        return os.environ.get(PASSWORD_ENV) or None
    try:
        text = Path(password_file).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read password file: {exc.strerror}", key="--password-file") from None
    if not text or not text.splitlines()[0]:
        raise ConfigError("password file is empty", key="--password-file")
    return text.splitlines()[0]


def build_options(target: str, cli: dict[str, Any]) -> ConformOptions:
    """Merge the profile (when ``target`` is a ``.toml`` file) and the CLI values (``None`` = not given).

    Guarantees a fully validated :class:`ConformOptions` or a :class:`ConfigError`.
    """
    if target.endswith(".toml") or Path(target).is_file():
        host, port, merged = _profile(str(Path(target)))
    else:
        (host, port), merged = parse_target(target), {}
    merged |= _validated({k: v for k, v in cli.items() if v is not None and v != () and v is not False}, None)
    implicit, starttls = merged.pop("tls", False), merged.pop("starttls", False)
    if implicit and starttls:
        raise ConfigError("--starttls and --tls exclude each other", key="--tls")
    for key, exists in (("ca_file", Path.is_file), ("store_dir", Path.is_dir)):
        if merged.get(key) and not exists(Path(merged[key])):
            raise ConfigError(f"{merged[key]!r} does not exist", key=f"--{key.replace('_', '-')}")
    if merged.get("ca_file") and (problem := ca_file_problem(merged["ca_file"])):
        raise ConfigError(problem, key="--ca-file")
    merged["check_timeout"] = float(merged.get("check_timeout", max(60.0, merged.get("timeout", 10.0) * 6)))
    tls = "implicit" if implicit else "starttls" if starttls else "none"
    password = read_password(merged.pop("password_file", None))
    options = {_FIELD_OF.get(k, k): v for k, v in merged.items() if v is not None}
    return ConformOptions(host=host, port=port, tls=tls, password=password, **options)
