#!/usr/bin/env bash
# The main job end to end on a CPU: set-up, queue and run the `quickstart` experiment
# (experiments/quickstart.json) with two worker processes, then write its report to
# reports/quickstart/index.md. Running it again resumes the queue (finished runs are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${PYTHON:-python3}"
# The offline data copies beside the checkout, unless the caller points elsewhere.
if [ -z "${OVIS_DATA:-}" ] && [ -d ../shared/data ]; then export OVIS_DATA="$(cd ../shared/data && pwd)"; fi
"$PYTHON" manager.py --exp quickstart --processes 2 "$@"
"$PYTHON" dbutils.py --exp quickstart --check
"$PYTHON" report.py --exp quickstart --keys dataset,estimator,iw \
  --metrics test:loss/L_k,train:loss/kl_q_p,train:grads/snr \
  --detailed_metrics "" \
  --pivot_metrics max:test:loss/L_k,last:train:loss/kl_q_p,mean:train:grads/snr
echo "report: reports/quickstart/index.md"
