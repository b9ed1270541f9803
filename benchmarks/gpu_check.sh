#!/usr/bin/env bash
# Measure every performance target of PERF.md in one run and print one table (figure, peer figure,
# ratio, target, pass/fail), also written as JSON; benchmarks/gpu_check.py runs the benchmarks.
#
#   bash benchmarks/gpu_check.sh                    # PERF.md's shapes: under 8 minutes on one H100
#   bash benchmarks/gpu_check.sh --smoke            # tiny shapes on the CPU, as tests/benchmarks runs it
#   bash benchmarks/gpu_check.sh --wheels DIR       # a machine without PyPI: missing packages from DIR
#   Other options go to gpu_check.py: --out FILE (default gpu_check.json), --budget SECONDS, --only NAMES.
#
# Interpreters, from the repository alone:
# - a python3 (or $LM_SAES_PYTHON) whose torch sees a CUDA GPU is used as it is, and left as it is:
#   lm-saes runs from this checkout (PYTHONPATH), and what lm-saes (pyproject.toml) and the peers
#   (scripts/peers.txt) need beyond what that interpreter has is resolved by pip against it, torch
#   pinned to the installed build, and installed into .gpu-site/ (from PyPI, or --wheels DIR offline).
#   What cannot be installed is reported in the table (a benchmark that fails names the missing
#   module), never fatal.
# - otherwise (no GPU, or --smoke) scripts/setup.sh's .venv, with scripts/peers.sh's .venv-peers for the
#   peers when it exists (--smoke never builds it: the table says which peers were not importable).
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0 wheels="" forward=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; forward+=("$1") ;;
        --wheels) wheels="$(cd "$2" && pwd)"; shift ;;
        *) forward+=("$1") ;;
    esac
    shift
done

cuda_python() {  # the first candidate interpreter whose torch sees a GPU
    for py in "${LM_SAES_PYTHON:-}" python3; do
        if [ -n "$py" ] && "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
            echo "$py"
            return
        fi
    done
}

# install_missing PY REQUIREMENTS...: pip resolves REQUIREMENTS against PY's packages (torch pinned)
# and installs only what PY lacks into .gpu-site/, without touching PY's own environment.
install_missing() {
    local py=$1; shift
    local pip=("$py" -m pip --disable-pip-version-check -q) index=()
    [ -z "$wheels" ] || index=(--no-index --find-links "$wheels")
    "$py" -c "import torch; print('torch==' + torch.__version__)" > .gpu-site/constraints.txt
    "${pip[@]}" install --dry-run "${index[@]}" -c .gpu-site/constraints.txt \
        --report .gpu-site/report.json "$@" 2>/dev/null || return 1
    "$py" -c "import json; print('\n'.join(f\"{i['metadata']['name']}=={i['metadata']['version']}\"
              for i in json.load(open('.gpu-site/report.json'))['install']))" > .gpu-site/missing.txt
    [ ! -s .gpu-site/missing.txt ] || "${pip[@]}" install --no-deps --no-compile --upgrade --target .gpu-site \
        "${index[@]}" -r .gpu-site/missing.txt
}

gpu_python=""
[ "$smoke" = 1 ] || gpu_python="$(cuda_python)"
if [ -n "$gpu_python" ]; then
    py="$gpu_python" peers_python="$gpu_python"
    mkdir -p .gpu-site
    export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # pip then sees what an earlier run put there
    "$py" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > .gpu-site/requirements.txt
    install_missing "$py" -r .gpu-site/requirements.txt -r scripts/peers.txt \
        || { echo "gpu_check: lm-saes and the peers do not install together here; lm-saes alone" >&2
             install_missing "$py" -r .gpu-site/requirements.txt \
                 || echo "gpu_check: lm-saes's dependencies are not all installable here" >&2; }
else
    [ "$smoke" = 1 ] || { bash scripts/setup.sh; bash scripts/peers.sh || true; }
    py="${LM_SAES_PYTHON:-.venv/bin/python}"
    [ -x "$py" ] || { bash scripts/setup.sh; py=.venv/bin/python; }
    peers_python="$py"
    [ ! -x .venv-peers/bin/python ] || peers_python="$PWD/.venv-peers/bin/python"
fi
exec "$py" benchmarks/gpu_check.py --peers-python "$peers_python" "${forward[@]}"
