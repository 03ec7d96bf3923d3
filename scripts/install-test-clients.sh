#!/usr/bin/env bash
# Installs the test clients that come from PyPI and npm, pinned, under target/ and tests/
# (never system-wide): aioquic (an HTTP/3 client independent of the edge's stack) in
# target/pyenv, and playwright-core (to drive Debian's chromium) and Shaka Player (a second
# stock MSE player) in tests/browser. Does nothing when they are there already. The system
# packages they need (python3-venv, nodejs, npm, chromium) come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

AIOQUIC=1.7.2
venv=target/pyenv
if ! "$venv/bin/python" -c "import aioquic, sys; sys.exit(aioquic.__version__ != '$AIOQUIC')" 2>/dev/null; then
    echo "test clients: installing aioquic $AIOQUIC in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "aioquic==$AIOQUIC"
fi

if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/shaka-player ]; then
    echo "test clients: installing playwright-core and shaka-player in tests/browser"
    (cd tests/browser && npm ci --silent --no-audit --no-fund)
fi
echo "test clients: ready"
