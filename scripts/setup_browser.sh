#!/usr/bin/env bash
# Install Debian's headless browser pair for the demo's browser test (tests/demo/test_browser.py):
# `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver). No-op when both
# are present. Needs root or sudo and the Debian package mirror.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
    echo "setup_browser: $(chromium --version 2>/dev/null || echo chromium) and chromedriver already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        SUDO="sudo"
    else
        echo "setup_browser: need root (or sudo) to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi
if ! have apt-get; then
    echo "setup_browser: apt-get not found; install Chromium and its chromedriver with your package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
echo "setup_browser: installed $(chromium --version)"
