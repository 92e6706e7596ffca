#!/usr/bin/env bash
# Install the MTA packages used by the real-server test suite (tests/mta, pytest -m mta):
# postfix, dovecot-core and dovecot-lmtpd, on Debian/Ubuntu, non-interactively and WITHOUT
# starting or enabling any system service (the suite runs private instances of its own).
#
# Idempotent: does nothing when the binaries are already present. Exits 0 with a message when it
# cannot install (not root, no apt-get), so that CI on other systems simply skips the suite.
set -euo pipefail

PACKAGES=(postfix dovecot-core dovecot-lmtpd)

have_all() {
    command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || return 1
    [ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || return 1
    [ -x /usr/lib/postfix/sbin/master ] || return 1
    [ -x /usr/lib/dovecot/lmtp ] || return 1
    return 0
}

if have_all; then
    echo "install-mta: postfix and dovecot (with lmtpd) already installed; nothing to do."
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-mta: not root; cannot install ${PACKAGES[*]}. The mta test suite will be skipped."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-mta: apt-get not found; install ${PACKAGES[*]} by other means to run the mta suite."
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# shellcheck source=scripts/_no-service-start.sh
source "$(dirname "$0")/_no-service-start.sh"

# Postfix asks what kind of mail system this is; "No configuration" writes no main.cf and
# touches nothing on the host.
if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string localhost" | debconf-set-selections
fi

apt-get update -q
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${PACKAGES[@]}"

if have_all; then
    echo "install-mta: installed ${PACKAGES[*]} (no system service started)."
else
    echo "install-mta: installation finished but some binaries are still missing." >&2
    exit 1
fi
