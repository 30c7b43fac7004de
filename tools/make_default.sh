#!/usr/bin/env bash
# Rebuilds the embedded default model in icnseg/assets/ from scratch on the CPU:
# synthetic data (the five target classes, and a separate salient-instance set of other
# shapes in another look) -> stage 1 (two legs: 20 epochs, then 20 more from its weights
# with a step decay) -> stage 2 (saliency variant: the ICN learns from the *other* shapes'
# class-agnostic masks, never the target classes'; T = 3 with fed-back inputs after a
# 2-epoch warm-up) -> export. icnseg/assets/README.md records the figures of the shipped
# run. Usage: tools/make_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
mkdir -p "$work"
start=$(date +%s)
icnseg data synth --out "$work/shapes" --n 1000 --seed 0 --size 256 --force
icnseg data synth --out "$work/others" --n 1000 --seed 4242 --size 256 --style salient \
    --objects others --val-fraction 0 --force
common=(--data "$work/shapes" --backbone tiny --input-size 96 --batch-size 8 --lr 1e-3)
icnseg train stage1 "${common[@]}" --out "$work/stage1a.safetensors" --epochs 20 --lr-step 20
icnseg train stage1 "${common[@]}" --out "$work/stage1.safetensors" --epochs 20 --lr-step 14 \
    --seed 1 --init "$work/stage1a.safetensors"
icnseg train stage2 --data "$work/shapes" --stage1 "$work/stage1.safetensors" \
    --out "$work/default.safetensors" --icn-encoder tiny --epochs 4 --lr 1e-3 --lr-step 3 \
    --batch-size 8 --labels saliency "$work/others" --peak-min-response 0 --peak-relative 0.2 \
    --iterations 3 --feedback 0.5 --feedback-after 2
echo "trained in $(( $(date +%s) - start )) s"
if [[ "${ICNSEG_NO_INSTALL:-0}" != 1 ]]; then
    cp "$work/default.safetensors" icnseg/assets/default.safetensors
    tools/export_default.sh
fi
echo "make_default: $(( $(date +%s) - start )) s end to end"
# Sample images come from a seed no training run uses:
#   icnseg data synth --out "$work/samples" --n 3 --seed 777 --size 256 --val-fraction 0
