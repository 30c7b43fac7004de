#!/usr/bin/env bash
# Table 1's ICN ablations, trained exactly as the embedded model's ICN (tools/saliency_icn.sh)
# from a tools/make_default.sh WORKDIR, only the architecture changed: "no_fusion" (w/o CFM and
# DFM) and "no_prm" (w/o input PRM). The two run side by side, one thread each.
# Usage: tools/train_table1_variants.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
pids=()
for variant in no_fusion no_prm; do
    OMP_NUM_THREADS=1 tools/saliency_icn.sh "$work" "$work/$variant.safetensors" \
        --icn-variant "$variant" > "$work/$variant.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # a failed variant fails the script
