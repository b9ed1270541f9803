#!/usr/bin/env bash
# Build the web UI into lm_saes/server/static (node is needed only here, never at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
npm --prefix ui ci --no-audit --no-fund --loglevel=error >/dev/null
npm --prefix ui run build --silent >/dev/null
