#!/usr/bin/env bash
# Install Debian's redis-server for the cluster-wide limits / ledger / Celery suites
# (tests/integrations). The tests start private instances (own port and directory, foreground,
# stopped by PID); this script never starts or enables the system service.
#
# Idempotent: does nothing when redis-server is already present. Exits 0 with a message when it
# cannot install (not root, no apt-get), so the Redis-backed tests simply skip.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
    echo "install-redis: redis-server already installed; nothing to do."
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-redis: not root; cannot install redis-server. The Redis tests will be skipped."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-redis: apt-get not found; install redis-server by other means to run them."
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck source=scripts/_no-service-start.sh
source "$(dirname "$0")/_no-service-start.sh"

if ! apt-get install -y -q --no-install-recommends redis-server; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends redis-server
fi

if command -v redis-server >/dev/null 2>&1; then
    echo "install-redis: installed redis-server (no system service started)."
else
    echo "install-redis: installation finished but redis-server is missing." >&2
    exit 1
fi
