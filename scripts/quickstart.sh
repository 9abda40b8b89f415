#!/usr/bin/env bash
# The main job end to end on a CPU: set-up, queue and run the `quickstart` experiment
# (experiments/quickstart.json: 15 short runs) with two worker processes, then write its report
# to reports/quickstart/index.md. Running it again resumes the queue (finished runs are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${PYTHON:-python3}"
# The offline data copies beside the checkout, unless the caller points elsewhere.
if [ -z "${OVIS_DATA:-}" ] && [ -d ../shared/data ]; then export OVIS_DATA="$(cd ../shared/data && pwd)"; fi
"$PYTHON" manager.py --exp quickstart --processes 2 "$@"
"$PYTHON" dbutils.py --exp quickstart --check
"$PYTHON" report.py --exp quickstart
