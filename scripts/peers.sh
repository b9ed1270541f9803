#!/usr/bin/env bash
# Create .venv-peers: the peer toolkits (sae-lens, EleutherAI sparsify) beside lm-saes, for the
# interop test and the side-by-side benchmarks. Never a dependency of lm-saes itself.
# Idempotent like setup.sh: returns at once when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv-peers
STAMP="$VENV/.peers-installed"
WANT="$(cat pyproject.toml scripts/peers.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    $PIP install "torch==${LM_SAES_TORCH:-2.13.0}"
fi
$PIP install -e . "sae-lens==6.54.12" "eai-sparsify==1.3.3"
echo "$WANT" > "$STAMP"
