"""Postfix from the Debian package: a private instance per test (postfix -c DIR start-fg)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping

from tests.peers import free_port
from tests.real.harness import (
    HOSTNAME,
    LOCAL_DOMAIN,
    RealServer,
    Unavailable,
    launch,
    make_tls_files,
    make_workdir,
    require_root,
    system_user,
)
from tests.real.mta_dovecot import start_dovecot_auth

# --------------------------------------------------------------------------------------------------- Postfix

POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_version() -> str:
    """The installed Postfix's ``mail_version`` (Unavailable if Postfix is not installed)."""
    if not shutil.which("postconf"):
        raise Unavailable("Postfix is not installed: run tests/real/install.sh as root (apt-get install postfix)")
    out = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise Unavailable(f"postconf failed: {out.stderr.strip()}")
    return out.stdout.strip()


def start_postfix(
    main_cf: Mapping[str, str] | None = None, tls: bool = False, auth: tuple[str, str] | None = None
) -> RealServer:
    """Start a private Postfix instance (``postfix -c DIR start-fg``) listening on 127.0.0.1:<free port>.

    ``main_cf`` overrides or adds main.cf parameters, e.g. ``{"smtpd_forbid_bare_newline": "yes"}`` or, to
    relay through it, ``{"relayhost": "[127.0.0.1]:PORT", "mynetworks": "127.0.0.0/8"}`` (the queue retries
    after 1 s here).  By default no client is in ``mynetworks``, so relaying is refused with
    ``554 5.7.1 Relay access denied`` (``reject_unauth_destination``).  ``tls`` adds STARTTLS (trustme
    certificate, ``server.tls.ca`` verifies it).  ``auth=(user, password)`` enables SMTP AUTH (PLAIN, LOGIN,
    also without TLS) through a private Dovecot auth service (``smtpd_sasl_type = dovecot``), stopped with Postfix.
    """
    require_root()
    version = postfix_version()
    postfix_user = system_user("postfix")
    work = make_workdir("postfix")
    conf, queue, data, maildir = work / "conf", work / "queue", work / "data", work / "mail"
    for d in (conf, queue, data, maildir):
        d.mkdir()
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
    os.chown(maildir, postfix_user.pw_uid, postfix_user.pw_gid)
    port = free_port()
    params: dict[str, str] = {
        "compatibility_level": "3.6",
        "config_directory": str(conf),
        "queue_directory": str(queue),
        "data_directory": str(data),
        # postfix-files (used by `postfix check`) stays the package's.
        "meta_directory": "/etc/postfix",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": HOSTNAME,
        "mydomain": LOCAL_DOMAIN,
        "myorigin": LOCAL_DOMAIN,
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        # Nobody may relay unless a test says so (a loopback client would be in the default mynetworks).
        "mynetworks": "",
        "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        # example.test is a virtual mailbox domain: any local part is delivered into maildir/<local>/.
        "virtual_mailbox_domains": LOCAL_DOMAIN,
        "virtual_mailbox_base": str(maildir),
        # A catch-all into one maildir: Postfix forbids $1 substitution in mailbox maps.
        "virtual_mailbox_maps": f"regexp:{conf}/vmailbox",
        "virtual_uid_maps": f"static:{postfix_user.pw_uid}",
        "virtual_gid_maps": f"static:{postfix_user.pw_gid}",
        "virtual_minimum_uid": "1",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "smtp_dns_support_level": "disabled",
        "smtpd_banner": "$myhostname ESMTP $mail_name",
        "maillog_file": str(work / "maillog"),
        "maillog_file_prefixes": str(work),
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "1s",
        "queue_run_delay": "1s",
        "biff": "no",
    }
    tls_files = None
    if tls:
        tls_files = make_tls_files(work)
        params.update(
            smtpd_tls_cert_file=str(tls_files.cert),
            smtpd_tls_key_file=str(tls_files.key),
            smtpd_tls_security_level="may",
        )
    companions = [start_dovecot_auth(*auth)] if auth else []
    if companions:
        params.update(
            smtpd_sasl_auth_enable="yes",
            smtpd_sasl_type="dovecot",
            smtpd_sasl_path=f"inet:127.0.0.1:{companions[0].port}",
        )
    params.update(main_cf or {})
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
    (conf / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=f"127.0.0.1:{port}"))
    (conf / "vmailbox").write_text(f"/@{re.escape(LOCAL_DOMAIN)}$/ all/\n")
    server = RealServer(
        name=f"postfix-{version}",
        host="127.0.0.1",
        port=port,
        workdir=work,
        log_path=work / "maillog",
        maildir=maildir,
        tls=tls_files,
        stop_command=["postfix", "-c", str(conf), "stop"],
        extra_logs=[work / "postfix.stderr"],
        companions=companions,
    )
    # start-fg keeps the master process our child, so stop() can account for every process it forks.
    return launch(server, ["postfix", "-c", str(conf), "start-fg"], work / "postfix.stderr")
