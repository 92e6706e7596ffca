#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the docs site check (tests/docs/test_site.py),
# and Graphviz, which draws the state diagram of the site at build time (no CDN script).
# Idempotent; exits 0 with a message when it cannot install (not root, no apt-get), so the site
# test is skipped with a clear reason instead of failing on systems without apt.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v dot >/dev/null 2>&1; then
    echo "install-chromium: chromium and graphviz already installed; nothing to do."
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-chromium: not root; cannot install chromium. The docs site check will be skipped."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; install chromium by other means."
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium fonts-dejavu-core graphviz >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y --no-install-recommends chromium fonts-dejavu-core graphviz >/dev/null
fi
command -v chromium >/dev/null
command -v dot >/dev/null
echo "install-chromium: $(chromium --version 2>/dev/null || echo chromium installed)"
