#!/usr/bin/env bash
# Install the proxy servers used by the proxy tests (tests/transport/test_proxy_servers.py and
# the proxy tests of tests/mta): Debian's dante-server (danted, SOCKS4/SOCKS5) and tinyproxy
# (HTTP CONNECT), non-interactively and WITHOUT starting or enabling their system services (the
# fixtures run private instances on loopback and stop them by PID).
#
# Also creates the system user the SOCKS5 username/password tests authenticate as (danted checks
# "socksmethod: username" against the system's passwords): mailsdk-proxy-test, password below.
#
# Idempotent. Exits 0 with a message when it cannot install (not root, no apt-get), so that the
# proxy tests skip with a reason; CI sets MAILSDK_REQUIRE_PROXIES=1 so that they cannot skip there.
set -euo pipefail

PACKAGES=(dante-server tinyproxy)
TEST_USER=mailsdk-proxy-test
TEST_PASSWORD=mailsdk-proxy-pw

have_all() {
    [ -x /usr/sbin/danted ] || return 1
    [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || return 1
    return 0
}

ensure_user() {
    if [ "$(id -u)" -ne 0 ]; then
        return 0
    fi
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$TEST_USER"
    fi
    echo "$TEST_USER:$TEST_PASSWORD" | chpasswd
}

if have_all; then
    ensure_user
    echo "install-proxies: danted and tinyproxy already installed; nothing to do."
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-proxies: not root; cannot install ${PACKAGES[*]}. The proxy tests will be skipped."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-proxies: apt-get not found; install ${PACKAGES[*]} by other means to run the proxy tests."
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# shellcheck source=scripts/_no-service-start.sh
source "$(dirname "$0")/_no-service-start.sh"

if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" 2>/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${PACKAGES[@]}"
fi
ensure_user

if have_all; then
    echo "install-proxies: installed ${PACKAGES[*]} (no system service started)."
else
    echo "install-proxies: installation finished but danted or tinyproxy is missing." >&2
    exit 1
fi
