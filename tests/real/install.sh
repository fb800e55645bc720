#!/usr/bin/env bash
# Provide the real MTAs of the tests/real tier on a Debian bookworm machine (run as root; idempotent).
#
# - Postfix: Debian's package, installed system-wide ("No configuration": the tests run private instances
#   with `postfix -c DIR`, the system instance is never started).
# - Exim 4 and OpenSMTPD: both conflict with Postfix as "the" MTA, so their .debs are downloaded and unpacked
#   with `dpkg -x` into $SMTPBENCH_REAL_ROOT (default /var/cache/smtpbench-real/root); only their shared-library
#   dependencies and the system users their binaries were built for are installed.
# - Dovecot's LMTP server (dovecot-lmtpd): no conflict, installed system-wide (not started by the package where
#   policy-rc.d denies it, as in containers; the tests run private instances with `dovecot -F -c CONF`).
set -euo pipefail

CACHE=${SMTPBENCH_REAL_CACHE:-/var/cache/smtpbench-real}
ROOT=${SMTPBENCH_REAL_ROOT:-$CACHE/root}
STAMP=$ROOT/.complete-v2
UNPACKED="exim4-base exim4-daemon-light exim4-config opensmtpd"
# Shared libraries of the unpacked binaries (checked with ldd below) and the tools the harness calls.
LIBS="libidn12 libevent-2.1-7 libdb5.3 libpam0g libssl3 libsasl2-2 libgnutls30 libpcre2-8-0 libexttextcat-2.0-0 libsodium23 libstemmer0d liblz4-1 libzstd1 libcap2 libicu72 libwrap0"

if [ "$(id -u)" != 0 ]; then
    echo "tests/real/install.sh: must run as root" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive

missing=""
command -v postfix >/dev/null || missing="postfix"
[ -x /usr/lib/dovecot/lmtp ] || missing="$missing dovecot-lmtpd"
for p in $LIBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ] || [ ! -f "$STAMP" ]; then
    apt-get update -qq
fi
if [ -n "$missing" ]; then
    # Postfix's debconf question: no system configuration, the tests bring their own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# System users the unpacked binaries look up by name at start (compiled in: Debian-exim; opensmtpd/opensmtpq).
getent group Debian-exim >/dev/null || groupadd --system Debian-exim
id Debian-exim >/dev/null 2>&1 || useradd --system --gid Debian-exim --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
for name in opensmtpd opensmtpq; do
    getent group "$name" >/dev/null || groupadd --system "$name"
    id "$name" >/dev/null 2>&1 || useradd --system --gid "$name" --home-dir /nonexistent --shell /usr/sbin/nologin "$name"
done

if [ ! -f "$STAMP" ]; then
    rm -rf "$ROOT" "$CACHE/debs"
    mkdir -p "$CACHE/debs" "$ROOT"
    # apt-get download writes into the current directory; _apt must be able to write there.
    chmod 755 "$CACHE" && chown _apt "$CACHE/debs" 2>/dev/null || true
    (cd "$CACHE/debs" && apt-get download -qq $UNPACKED)
    for deb in "$CACHE"/debs/*.deb; do
        dpkg -x "$deb" "$ROOT"
    done
    for bin in "$ROOT/usr/sbin/exim4" "$ROOT/usr/sbin/smtpd"; do
        if ldd "$bin" | grep -q 'not found'; then
            echo "tests/real/install.sh: $bin misses libraries:" >&2
            ldd "$bin" | grep 'not found' >&2
            exit 1
        fi
    done
    touch "$STAMP"
fi
# OpenSMTPD has its helper programs, spool and control socket compiled in (no option moves them): point the
# libexec path at the unpacked copy (nothing else owns it while the package is not installed) and create the
# chroot directory of its unprivileged processes.  Only one OpenSMTPD can run at a time (the harness locks).
if [ ! -e /usr/libexec/opensmtpd ]; then
    ln -s "$ROOT/usr/libexec/opensmtpd" /usr/libexec/opensmtpd
fi
mkdir -p /var/lib/opensmtpd/empty
echo "tests/real/install.sh: postfix $(postconf -d -h mail_version 2>/dev/null), dovecot $(dovecot --version | cut -d' ' -f1), unpacked in $ROOT: $(ls "$ROOT/usr/sbin" | grep -cE '^(exim4|smtpd)$') servers"
