#!/usr/bin/env bash
# Create .venv-peers: the peer toolkits (sae-lens, EleutherAI sparsify, devinterp) beside lm-saes, for
# the interop and equality tests and the side-by-side benchmarks. Never a dependency of lm-saes itself.
# Idempotent like setup.sh: returns at once when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
venv_ready .venv-peers pyproject.toml scripts/peers.sh scripts/peers.txt scripts/venv.sh && exit 0
venv_create .venv-peers
$PIP install -e . -r scripts/peers.txt
venv_done .venv-peers
