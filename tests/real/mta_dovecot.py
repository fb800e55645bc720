"""Dovecot's LMTP server from the Debian package: a private instance per test (dovecot -F -c CONF)."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.peers import free_port
from tests.real.harness import (
    RealServer,
    Unavailable,
    launch,
    make_workdir,
    require_root,
    system_user,
)

# No system configuration is read (-c CONF only); base_dir, state and logs stay in WORK.
DOVECOT_COMMON = """\
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
"""

# LMTP is final delivery: every recipient is accepted (static userdb, allow_all_users) and stored in the maildir
# mail/<local part>/.
DOVECOT_LMTP = """\
protocols = lmtp
mail_location = maildir:{work}/mail/%n
passdb {{
  driver = static
  args = nopassword
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={work}/mail/%n allow_all_users=yes
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""

# Only the authentication service, for Postfix's SASL (smtpd_sasl_type = dovecot, smtpd_sasl_path =
# inet:127.0.0.1:PORT): PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-256, allowed without TLS, against a passwd-file of
# fixed credentials (plaintext, so that the challenge mechanisms can be served too).
DOVECOT_AUTH = """\
protocols =
auth_mechanisms = plain login cram-md5 scram-sha-256
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/auth.passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home=/nonexistent
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


def start_dovecot_lmtp() -> RealServer:
    """Start Dovecot's LMTP service on 127.0.0.1:<free port>, delivering every recipient into a maildir.

    Speak LMTP (LHLO) to it; ``delivered(local)`` finds the messages in ``maildir/<local>/``.
    """
    return _start(DOVECOT_LMTP, "dovecot-lmtp", {})


def start_dovecot_auth(user: str, password: str) -> RealServer:
    """Start only Dovecot's authentication service on 127.0.0.1:<free port> (for Postfix SMTP AUTH)."""
    return _start(DOVECOT_AUTH, "dovecot-auth", {"auth.passwd": f"{user}:{{PLAIN}}{password}\n"})


def _start(template: str, name: str, files: dict[str, str]) -> RealServer:
    require_root()
    binary = shutil.which("dovecot")
    if not binary or not os.path.exists("/usr/lib/dovecot/lmtp"):
        raise Unavailable("Dovecot is not installed: run tests/real/install.sh as root (dovecot-lmtpd)")
    vmail = system_user("dovecot")
    system_user("dovenull")
    work = make_workdir("dovecot")
    (work / "mail").mkdir()
    os.chown(work / "mail", vmail.pw_uid, vmail.pw_gid)
    for filename, text in files.items():
        (work / filename).write_text(text)
        (work / filename).chmod(0o644)
    port = free_port()
    conf = work / "dovecot.conf"
    conf.write_text((DOVECOT_COMMON + template).format(work=work, port=port))
    check = subprocess.run(["doveconf", "-c", str(conf), "-n"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise Unavailable(f"Dovecot rejects its configuration {conf}:\n{check.stdout}{check.stderr}")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    server = RealServer(
        name=f"{name}-{version[0] if version else 'unknown'}",
        host="127.0.0.1",
        port=port,
        workdir=work,
        log_path=work / "dovecot.log",
        maildir=work / "mail",
        extra_logs=[work / "dovecot.stderr"],
    )
    # -F: the master stays in the foreground (our child); SIGTERM stops it and its services.
    return launch(server, [binary, "-F", "-c", str(conf)], work / "dovecot.stderr")
