#!/usr/bin/env bash
# Install what benchmarks/ needs beyond the dev extras (scripts/bootstrap brings aiosmtplib and
# pytest-benchmark): Postfix's smtp-sink (the server) and smtp-source (the C load generator),
# from Debian's postfix package. scripts/install-mta.sh installs postfix non-interactively
# without starting or enabling any service (the harness runs smtp-sink standalone), so this
# delegates to it. Idempotent; exits 0 with a message when it cannot install (the delivery
# benchmark then skips).
set -euo pipefail
cd "$(dirname "$0")/.."

have_sink() {
    for tool in smtp-sink smtp-source; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || return 1
    done
}

if have_sink; then
    echo "install-bench: smtp-sink and smtp-source already installed; nothing to do."
    exit 0
fi
bash scripts/install-mta.sh
if have_sink; then
    echo "install-bench: smtp-sink and smtp-source installed."
else
    echo "install-bench: smtp-sink/smtp-source still missing; the delivery benchmark will skip." >&2
fi
