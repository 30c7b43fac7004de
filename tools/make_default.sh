#!/usr/bin/env bash
# Rebuilds the embedded default model in icnseg/assets/ from scratch on the CPU:
# synthetic data -> stage 1 (two legs: 20 epochs, then 20 more from its weights with a
# step decay) -> stage 2 (saliency variant) -> export. icnseg/assets/README.md records the
# figures of the shipped run. Usage: tools/make_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
mkdir -p "$work"
icnseg data synth --out "$work/shapes" --n 1000 --seed 0 --size 256 --force
common=(--data "$work/shapes" --backbone tiny --input-size 96 --batch-size 8 --lr 1e-3)
icnseg train stage1 "${common[@]}" --out "$work/stage1a.safetensors" --epochs 20 --lr-step 20
icnseg train stage1 "${common[@]}" --out "$work/stage1.safetensors" --epochs 20 --lr-step 14 \
    --seed 1 --init "$work/stage1a.safetensors"
icnseg train stage2 --data "$work/shapes" --stage1 "$work/stage1.safetensors" \
    --out "$work/default.safetensors" --icn-encoder tiny --epochs 4 --lr 1e-3 --lr-step 4 \
    --batch-size 8 --labels saliency "$work/shapes" --peak-min-response 0 --peak-relative 0.2 \
    --iterations 1
cp "$work/default.safetensors" icnseg/assets/default.safetensors
tools/export_default.sh
# Sample images come from a seed no training run uses:
#   icnseg data synth --out "$work/samples" --n 3 --seed 777 --size 256 --val-fraction 0
