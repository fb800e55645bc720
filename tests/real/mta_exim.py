"""Exim 4 from the unpacked Debian package, with Exim's default anti-abuse limits."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.peers import free_port
from tests.real.harness import (
    HOSTNAME,
    LOCAL_DOMAIN,
    REAL_ROOT,
    RealServer,
    Unavailable,
    launch,
    make_tls_files,
    make_workdir,
    require_root,
    system_user,
)

# ------------------------------------------------------------------------------------------------------ Exim

# Exim's own default configuration (src/configure.default, shipped as examples/example.conf), reduced to what a
# loopback test needs; every anti-abuse limit (smtp_max_unknown_commands, smtp_max_synprot_errors,
# smtp_accept_max_nonmail, ...) keeps its default because conform must cope with them.  Differences from the
# default, and why: no `require verify = sender` and no dnslookup router (tests must not need DNS); a fixed
# maildir for every local part (4.96 refuses tainted $local_part in file names).  Like the default, the
# primary host name (@) is a local domain: an unqualified RCPT TO:<Postmaster> is qualified with it.
EXIM_CONF = """\
primary_hostname = {hostname}
# Exim re-executes itself (deliveries, queue runs): the unpacked binary, not the compiled-in /usr/sbin/exim4.
exim_path = {binary}
domainlist local_domains = @ : {domain}
domainlist relay_to_domains =
hostlist   relay_from_hosts =
local_interfaces = 127.0.0.1
daemon_smtp_ports = {port}
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
keep_environment =
acl_smtp_rcpt = acl_check_rcpt
.ifdef _HAVE_PRDR
acl_smtp_data_prdr = acl_check_prdr
prdr_enable = true
.endif
acl_smtp_data = acl_check_data
{tls}
never_users = root
host_lookup = *
log_selector = +smtp_protocol_error +smtp_syntax_error +tls_certificate_verified
ignore_bounce_errors_after = 2d
timeout_frozen_after = 7d

begin acl

acl_check_rcpt:
  accept  hosts = :
          control = dkim_disable_verify
  deny    message       = Restricted characters in address
          domains       = +local_domains
          local_parts   = ^[.] : ^.*[@%!/|]
  deny    message       = Restricted characters in address
          domains       = !+local_domains
          local_parts   = ^[./|] : ^.*[@%!] : ^.*/\\\\.\\\\./
  accept  local_parts   = postmaster
          domains       = +local_domains
  deny    condition     = ${{if and {{{{>{{$rcpt_count}}{{10}}}}{{<{{$recipients_count}}{{${{eval:$rcpt_count/2}}}}}} }}}}
          message       = Rejected for too many bad recipients
  accept  hosts         = +relay_from_hosts
          control       = submission
  accept  authenticated = *
          control       = submission
  require message = relay not permitted
          domains = +local_domains : +relay_to_domains
  require verify = recipient
  accept

acl_check_prdr:
  warn  set acl_m_did_prdr = y
  accept

acl_check_data:
  deny    condition  = ${{if > {{$max_received_linelength}}{{998}}}}
          message    = maximum allowed line length is 998 octets, \\
                       got $max_received_linelength
  deny    !verify =     header_syntax
          message =     header syntax
          log_message = header syntax ($acl_verify_message)
  accept

begin routers

localuser:
  driver = accept
  domains = +local_domains
  transport = local_delivery

begin transports

local_delivery:
  driver = appendfile
  directory = {work}/mail/all
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = {user}

begin retry

*                      *           F,2h,15m; G,16h,1h,1.5; F,4d,6h

begin rewrite

begin authenticators
{auth}
"""

EXIM_TLS = """\
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
"""

# Fixed credentials over PLAIN and LOGIN (Exim's plaintext driver; no SASL library or dovecot needed).
EXIM_AUTH = """\
PLAIN:
  driver = plaintext
  server_prompts = :
  server_condition = ${{if and {{{{eq{{$auth2}}{{{user}}}}}{{eq{{$auth3}}{{{password}}}}}}}}}
  server_set_id = $auth2

LOGIN:
  driver = plaintext
  server_prompts = <| Username: | Password:
  server_condition = ${{if and {{{{eq{{$auth1}}{{{user}}}}}{{eq{{$auth2}}{{{password}}}}}}}}}
  server_set_id = $auth1
"""


def exim_binary() -> Path:
    """The unpacked Exim daemon (Unavailable if install.sh has not unpacked it)."""
    binary = REAL_ROOT / "usr/sbin/exim4"
    if not binary.exists():
        raise Unavailable(f"Exim is not unpacked at {binary}: run tests/real/install.sh as root")
    return binary


def start_exim(
    tls: bool = False, auth: tuple[str, str] | None = None, main: Mapping[str, str] | None = None
) -> RealServer:
    """Start Exim 4 (``exim4 -C CONF -bdf``) from the unpacked Debian package on 127.0.0.1:<free port>.

    ``tls`` adds STARTTLS (trustme certificate); ``auth=(user, password)`` adds AUTH PLAIN and LOGIN with
    those credentials (Exim advertises them on plain connections too).  ``main`` sets main-section options,
    replacing the harness's value where it has one, e.g. ``{"smtp_max_unknown_commands": "100"}`` or
    ``{"acl_smtp_expn": "accept"}``.
    """
    require_root()
    binary = exim_binary()
    exim_user = system_user("Debian-exim")
    work = make_workdir("exim")
    for sub in ("spool", "log", "mail"):
        (work / sub).mkdir()
        os.chown(work / sub, exim_user.pw_uid, exim_user.pw_gid)
    port = free_port()
    tls_files = make_tls_files(work) if tls else None
    if tls_files:
        os.chown(tls_files.key, exim_user.pw_uid, exim_user.pw_gid)
    tls_text = EXIM_TLS.format(cert=tls_files.cert, key=tls_files.key) if tls_files else "tls_advertise_hosts ="
    auth_text = EXIM_AUTH.format(user=auth[0], password=auth[1]) if auth else ""
    conf = work / "exim.conf"
    conf.write_text(
        EXIM_CONF.format(
            hostname=HOSTNAME,
            binary=binary,
            domain=LOCAL_DOMAIN,
            port=port,
            work=work,
            tls=tls_text,
            user="Debian-exim",
            auth=auth_text,
        )
    )
    if main:
        conf.write_text(_set_main_options(conf.read_text(), main))
    conf.chmod(0o644)
    check = subprocess.run([str(binary), "-C", str(conf), "-bV"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise Unavailable(f"Exim rejects its configuration {conf}:\n{check.stdout}{check.stderr}")
    version = re.search(r"Exim version (\S+)", check.stdout)
    server = RealServer(
        name=f"exim-{version.group(1) if version else 'unknown'}",
        host="127.0.0.1",
        port=port,
        workdir=work,
        log_path=work / "log" / "mainlog",
        maildir=work / "mail",
        tls=tls_files,
        extra_logs=[work / "log" / "paniclog", work / "log" / "rejectlog", work / "exim.stderr"],
    )
    # -bdf: the daemon stays in the foreground (our child); -q1s runs the queue every second so deferred
    # deliveries are retried quickly.
    return launch(
        server, [str(binary), "-C", str(conf), "-bdf", "-q1s", "-oP", str(work / "exim.pid")], work / "exim.stderr"
    )


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def _set_main_options(text: str, options: Mapping[str, str]) -> str:
    """``text`` with each main-section option set once: an existing line is replaced, a new one goes last."""
    head, sep, rest = text.partition("\nbegin acl\n")
    for name, value in options.items():
        line = f"{name} = {value}"
        # A replacement function, so that backslashes in the value stay literal.
        head, count = re.subn(rf"^{re.escape(name)}\s*=.*$", _constant(line), head, flags=re.M)
        if not count:
            head += "\n" + line
    return head + sep + rest
