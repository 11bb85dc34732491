#!/usr/bin/env bash
# Set up the lesson in a virtual environment at .venv/, CPU only.
# Safe to run again: a finished set-up is reused unless the requirements change.
# After it has run once, nothing in the lesson needs the network.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# PyTorch's CPU wheels. Where that index cannot be reached, pip falls back to PyPI,
# whose Linux torchvision is a CUDA build: scripts/fix_torchvision.py handles that.
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
VENV=.venv
STAMP=$VENV/.xai-lesson-setup
WANTED=$(cat requirements.txt requirements-nodeps.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'; then
    echo "The lesson needs Python 3.10 to 3.13; '$PYTHON' is $("$PYTHON" --version 2>&1)." >&2
    echo "Run 'make lesson PYTHON=/path/to/python3.11' or see learners/setup.md." >&2
    exit 1
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANTED" ]; then
    echo "Reusing the environment in $VENV/ (delete it to start again)."
else
    start=$(date +%s)
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    # torch first: anything else may pull a CUDA torch and ~2.5 GB of nvidia-* wheels.
    # A local +cpu build sorts above PyPI's plain build, so the CPU index wins where it is reachable.
    "${PIP[@]}" --retries 1 --extra-index-url "$TORCH_INDEX_URL" torch==2.13.0 torchvision==0.28.0
    "${PIP[@]}" -r requirements.txt
    "${PIP[@]}" --no-deps -r requirements-nodeps.txt
    "${PIP[@]}" --no-deps -e .
    if "$VENV/bin/python" -m pip list 2>/dev/null | grep -i '^nvidia-'; then
        echo "ERROR: CUDA packages (nvidia-*) were installed, so torch is not the CPU build." >&2
        echo "Delete $VENV/ and run the set-up again; install torch==2.13.0 before anything else." >&2
        exit 1
    fi
    "$VENV/bin/python" scripts/fix_torchvision.py
    echo "$WANTED" > "$STAMP"
    echo "Installed the environment in $(( $(date +%s) - start )) s."
fi

# JupyterLab opens on the lesson, without asking to fetch Jupyter news from the internet.
"$VENV/bin/python" scripts/jupyterlab_quiet.py

# Fetch and check the data, and cache the models in a fast-loading form.
"$VENV/bin/python" -m xai_lesson.prepare
