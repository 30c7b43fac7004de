#!/usr/bin/env bash
# Reproduce the committed benchmark results under benchmarks/results/ (run from the repo root
# with icnseg installed as in the README). Measure on an otherwise idle machine: the JSON
# records the load average at the start of each run.
#   bash benchmarks/reproduce.sh            # CPU: torch, onnxruntime, baseline, scaling
#   DEVICE=cuda bash benchmarks/reproduce.sh   # a GPU machine: ORT-CUDA as well
set -euo pipefail
OUT="${OUT:-benchmarks/results}"
DEVICE="${DEVICE:-cpu}"
mkdir -p "$OUT"

# end to end + per stage, side by side, outputs checked equal, speed-ups over the baseline
icnseg bench default --backend torch --backend onnxruntime --baseline \
    --device "$DEVICE" --iters 30 --warmup 3 --json "$OUT/bench_${DEVICE}.json"

# stage cost vs K, N, input size and T (PNG + markdown table)
python -m research.scaling --model default --repeat 2 --out "$OUT/scaling_${DEVICE}"

# batched PRM backward vs the per-peak loop
python -m research.backward_speed --backbone tiny --size 96 --ks 1 4 8 16 --iters 5 \
    --out "$OUT"
