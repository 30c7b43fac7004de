#!/usr/bin/env bash
# The proposal-trained variant (paper 3.2's pseudo labels; not shipped: the embedded saliency
# ICN is better at T = 1, benchmarks/results/ablation.md). It continues from a
# tools/make_default.sh WORKDIR: round 2 of the saliency ICN is the first round here. Labels:
# union of the top-3 proposals (at the image's size) matched to that ICN's maps, on 400 target
# train images, never a mask; the ICN trained gets the naive PRMs, with fed-back inputs and
# rough cues for T = 3. NAME (default: default) picks the ICN to continue from,
# WORKDIR/NAME.safetensors, and writes WORKDIR/proposal_NAME.safetensors; for Table 1's
# variants (tools/train_table1_variants.sh) NAME is no_fusion or no_prm: the labels still
# come from WORKDIR/default.safetensors, so only the architecture differs.
# Usage: tools/train_proposal_variant.sh [WORKDIR] [NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
name=${2:-default}
variant=$([ "$name" = default ] && echo full || echo "$name")
[ -d "$work/shapes500" ] || icnseg data synth --out "$work/shapes500" --n 500 --seed 0 --size 256
icnseg train stage2 --data "$work/shapes500" --stage1 "$work/stage1.safetensors" \
    --out "$work/proposal_$name.safetensors" --icn-encoder tiny --icn-variant "$variant" \
    --batch-size 8 --lr 5e-4 --lr-step 1 --epochs 2 --seed 3 --labels proposals \
    --pseudo-icn "$work/default.safetensors" --pseudo-scoring icn \
    --init "$work/$name.safetensors" --peak-min-response 0 --peak-relative 0.2 \
    --iterations 3 --feedback 0.3 --rough-cues 0.3 --feedback-after 0
