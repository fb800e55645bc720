"""OpenSMTPD from the unpacked Debian package (one instance at a time per machine)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path
from typing import Any

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
    wait_until,
)

# ------------------------------------------------------------------------------------------------- OpenSMTPD

# OpenSMTPD compiles in its spool (/var/spool/smtpd) and control socket (/var/run/smtpd.sock): one instance at a
# time on a machine, serialised by this lock.
OPENSMTPD_LOCK = Path("/tmp/smtpbench-real-opensmtpd.lock")

OPENSMTPD_CONF = """\
{pki}
listen on 127.0.0.1 port {port} hostname {hostname} {listen_tls}
table domains {{ "{domain}", "{hostname}" }}
table vusers file:{work}/vusers
action "local" maildir "{work}/mail/all" virtual <vusers>
match from any for domain <domains> action "local"
"""


def opensmtpd_binary() -> Path:
    """The unpacked OpenSMTPD daemon (Unavailable if install.sh has not unpacked it)."""
    binary = REAL_ROOT / "usr/sbin/smtpd"
    if not binary.exists() or not Path("/usr/libexec/opensmtpd/mail.maildir").exists():
        raise Unavailable(f"OpenSMTPD is not unpacked at {binary}: run tests/real/install.sh as root")
    return binary


def start_opensmtpd(tls: bool = False, lock_timeout: float = 120.0) -> RealServer:
    """Start OpenSMTPD (``smtpd -d -f CONF``) from the unpacked Debian package on 127.0.0.1:<free port>.

    Relaying is refused (no ``match`` rule for other domains); ``tls`` adds STARTTLS (trustme certificate) --
    but Debian 12's build cannot complete a TLS handshake with OpenSSL 3 (upstream issues #1171/#1239): it
    advertises STARTTLS, answers 220, then fails the handshake with an internal-error alert.
    Waits up to ``lock_timeout`` seconds for another OpenSMTPD of this harness to stop (see OPENSMTPD_LOCK).
    """
    require_root()
    binary = opensmtpd_binary()
    vmail = system_user("opensmtpd")
    system_user("opensmtpq")
    lock = open(OPENSMTPD_LOCK, "a")  # noqa: SIM115 - held until stop() releases it
    try:
        wait_until(lambda: _try_lock(lock), lock_timeout, "another OpenSMTPD instance to stop", interval=0.2)
    except TimeoutError:
        lock.close()
        raise
    work = make_workdir("opensmtpd")
    try:
        (work / "mail").mkdir()
        os.chown(work / "mail", vmail.pw_uid, vmail.pw_gid)
        # Every example.test recipient is the system user opensmtpd (delivery runs as that user).  The host name
        # is a local domain for postmaster only: OpenSMTPD qualifies an unqualified RCPT TO:<Postmaster> with it
        # (a catch-all there would accept relay-looking local parts such as a%b@host, confusing SEC-01).
        (work / "vusers").write_text(f"@{LOCAL_DOMAIN} opensmtpd\npostmaster@{HOSTNAME} opensmtpd\n")
        port = free_port()
        tls_files = make_tls_files(work) if tls else None
        conf = work / "smtpd.conf"
        conf.write_text(
            OPENSMTPD_CONF.format(
                pki=f'pki {HOSTNAME} cert "{tls_files.cert}"\npki {HOSTNAME} key "{tls_files.key}"'
                if tls_files
                else "",
                listen_tls=f"tls pki {HOSTNAME}" if tls_files else "",
                port=port,
                hostname=HOSTNAME,
                work=work,
                domain=LOCAL_DOMAIN,
            )
        )
        check = subprocess.run([str(binary), "-n", "-f", str(conf)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise Unavailable(f"OpenSMTPD rejects its configuration {conf}:\n{check.stdout}{check.stderr}")
    except BaseException:
        lock.close()
        raise
    version = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=30)
    found = re.search(r"OpenSMTPD (\S+)", version.stdout + version.stderr)
    server = RealServer(
        name=f"opensmtpd-{found.group(1) if found else 'unknown'}",
        host="127.0.0.1",
        port=port,
        workdir=work,
        log_path=work / "smtpd.log",
        maildir=work / "mail",
        tls=tls_files,
        _release=lock.close,
    )
    # -d: foreground, log to stderr (the log file); -v for the SMTP session trace.
    return launch(server, [str(binary), "-d", "-v", "-f", str(conf)], work / "smtpd.log")


def _try_lock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
