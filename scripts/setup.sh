#!/usr/bin/env bash
# Installs ovis and its dependencies into the current Python (idempotent, a few seconds when
# everything is already there). torch is pinned to the CPU build in requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt -e . 2>&1 \
  | grep -v -e "Running pip as the 'root' user" -e "^$" || true
"$PYTHON" -c "import torch, ovis; print('ovis', ovis.__version__, '| torch', torch.__version__)"
