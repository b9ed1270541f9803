#!/usr/bin/env bash
# Set up .venv (scripts/setup.sh), the peers venv, the web UI and a headless browser, then run
# the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/peers.sh   # sae-lens beside lm-saes, for the interop round-trip test
bash scripts/ui.sh      # the web UI, built into lm_saes/server/static
bash scripts/browser.sh # Debian's chromium for the browser tests
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
