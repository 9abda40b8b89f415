#!/usr/bin/env bash
# The CUDA path in under 10 minutes, with a summary table at the end:
#   1. the CUDA-marked tests (pytest -m cuda)
#   2. 200 training steps (one --mini epoch) of the SBN 3 x 200 at K = 50 (ovis-gamma1) on the device
#   3. the same for the Gaussian VAE of Figure 4 (pathwise-iwae)
#   4. a K = 5000 evaluation (benchmarks/evaluation.py: time per point, memory)
#   5. measure_efficiency.py for K in 5, 50, 500, 5000 (step time, floor, memory)
#   6. the queue placing 2 workers on one GPU (scripts/gpu_check_queue.py)
#   7. the SBN's training step eager, compiled and captured as CUDA graphs (benchmarks/compiled_step.py)
# Time limits per step add up to 10 minutes.
# usage: scripts/gpu_check.sh [--device cuda|cuda:N|cpu] [--tiny]
#   --device cpu --tiny: a dry run of every step on a CPU with small sizes (minutes).
# Logs: the folder printed first; exit status 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
TINY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        *) echo "gpu_check.sh: unknown option $1; usage: scripts/gpu_check.sh [--device cuda|cpu] [--tiny]" >&2
           exit 2 ;;
    esac
done
if [ -z "${OVIS_DATA:-}" ] && [ -d ../shared/data ]; then export OVIS_DATA="$(cd ../shared/data && pwd)"; fi
export OVIS_NO_DOWNLOAD=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
OUT="$(mktemp -d -t ovis-gpu-check.XXXXXX)"
echo "gpu_check.sh: device $DEVICE, logs in $OUT"

if [ "$TINY" = 1 ]; then
    K=5; EVAL=(--iw 200 --test_bs 2 --batches 1 --chunks auto,400)
    EFFICIENCY=(--iw 5,50 --estimators ovis-gamma1,pathwise-iwae --steps 2 --untimed_steps 1)
    COMPILED=(--iw 5 --repeats 1 --steps 3 --untimed_steps 2)
else
    K=50; EVAL=(--iw 5000 --test_bs 10 --batches 3 --chunks auto,32768,131072)
    EFFICIENCY=(--iw 5,50,500,5000 --estimators reinforce,ovis-gamma1,pathwise-iwae --steps 10 --untimed_steps 3)
    COMPILED=(--iw 50 --repeats 1 --steps 30 --untimed_steps 5)
fi
RUN=(--mini --epochs 1 --bs 24 --eval_freq 1 --max_eval 100 --iw_test 100 --iw_valid 100 --grad_samples 10
     --grad_bs 24 --root "$OUT/runs" --exp gpu-check --device "$DEVICE")
printf "step\tstatus\tseconds\tresult\n" > "$OUT/summary.tsv"

# check NAME SECONDS COMMAND...: run with a time limit; one summary row (last line of its output).
check() {
    local name="$1" limit="$2"; shift 2
    local start=$SECONDS status
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    case $? in 0) status=ok ;; 124) status="TIME-OUT (${limit}s)" ;; *) status=FAILED ;; esac
    printf "%s\t%s\t%d\t%s\n" "$name" "$status" "$((SECONDS - start))" \
        "$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-110)" >> "$OUT/summary.tsv"
    echo "$name: $status"
}

check cuda-tests 45 "$PY" -m pytest -q -m cuda tests
check sbm-train 75 "$PY" run.py "${RUN[@]}" --dataset binmnist --model sbm --N 200 --depth 3 --nlayers 0 \
    --estimator ovis-gamma1 --iw "$K" --run_id sbm
check vae-train 75 "$PY" run.py "${RUN[@]}" --dataset binmnist --model gaussian-vae --N 200 --hdim 200 --nlayers 2 \
    --depth 1 --estimator pathwise-iwae --iw "$K" --run_id gaussian-vae
check evaluation 45 "$PY" benchmarks/evaluation.py --device "$DEVICE" "${EVAL[@]}"
check efficiency 150 "$PY" measure_efficiency.py --device "$DEVICE" --clock wall --models sbm,gaussian-vae "${EFFICIENCY[@]}" \
    --output "$OUT/efficiency"
check queue 60 "$PY" scripts/gpu_check_queue.py --device "$DEVICE"
check compiled-step 150 "$PY" benchmarks/compiled_step.py --device "$DEVICE" "${COMPILED[@]}"

echo
column -t -s $'\t' "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
for name in evaluation efficiency compiled-step; do
    echo; echo "== $name"; grep -E '^(\||###|cpu time|wall time|L_)' "$OUT/$name.log"
done
! grep -q -v -P '\tok\t' <(tail -n +2 "$OUT/summary.tsv")
