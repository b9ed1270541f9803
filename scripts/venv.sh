# Sourced by setup.sh and peers.sh: a venv holding the pinned CPU torch, re-installed only when
# the files that define it change. GPU users: install your own torch first and `pip install -e .`.

# venv_ready VENV FILE...: true when VENV was installed from exactly these files (sets WANT).
venv_ready() {
    local venv=$1; shift
    WANT="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$WANT" ]
}

# venv_create VENV: the venv with the CPU wheel of torch (an unpinned torch would pull a
# multi-GB CUDA build); sets PIP.
venv_create() {
    [ -x "$1/bin/python" ] || "${PYTHON:-python3}" -m venv "$1"
    PIP="$1/bin/python -m pip --disable-pip-version-check -q"
    "$1/bin/python" -c "import torch" 2>/dev/null || $PIP install "torch==${LM_SAES_TORCH:-2.13.0}"
}

# venv_done VENV: remember what it was installed from.
venv_done() {
    echo "$WANT" > "$1/.installed"
}
