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

# LMTP is final delivery: every recipient is accepted (static userdb, allow_all_users) and stored in the maildir
# mail/<local part>/.  No system configuration is read (-c CONF only); base_dir, state and logs stay in WORK.
DOVECOT_CONF = """\
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
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


def start_dovecot_lmtp() -> RealServer:
    """Start Dovecot's LMTP service on 127.0.0.1:<free port>, delivering every recipient into a maildir.

    Speak LMTP (LHLO) to it; ``delivered(local)`` finds the messages by their ``Delivered-To:`` header.
    """
    require_root()
    binary = shutil.which("dovecot")
    if not binary or not os.path.exists("/usr/lib/dovecot/lmtp"):
        raise Unavailable("Dovecot LMTP is not installed: run tests/real/install.sh as root (dovecot-lmtpd)")
    vmail = system_user("dovecot")
    system_user("dovenull")
    work = make_workdir("dovecot")
    (work / "mail").mkdir()
    os.chown(work / "mail", vmail.pw_uid, vmail.pw_gid)
    port = free_port()
    conf = work / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(work=work, port=port))
    check = subprocess.run(["doveconf", "-c", str(conf), "-n"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise Unavailable(f"Dovecot rejects its configuration {conf}:\n{check.stdout}{check.stderr}")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    server = RealServer(
        name=f"dovecot-lmtp-{version[0] if version else 'unknown'}",
        host="127.0.0.1",
        port=port,
        workdir=work,
        log_path=work / "dovecot.log",
        maildir=work / "mail",
        extra_logs=[work / "dovecot.stderr"],
    )
    # -F: the master stays in the foreground (our child); SIGTERM stops it and its services.
    return launch(server, [binary, "-F", "-c", str(conf)], work / "dovecot.stderr")
