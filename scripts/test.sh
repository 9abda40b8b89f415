#!/usr/bin/env bash
# Set-up, then the default test suite (slow tests excluded; run them with: scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The offline data copies beside the checkout, unless the caller points elsewhere.
if [ -z "${OVIS_DATA:-}" ] && [ -d ../shared/data ]; then export OVIS_DATA="$(cd ../shared/data && pwd)"; fi
export OVIS_NO_DOWNLOAD=1
exec "${PYTHON:-python3}" -m pytest "$@"
