#!/usr/bin/env bash
# Debian's chromium for the browser tests (playwright-core drives it; no browser is downloaded).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
