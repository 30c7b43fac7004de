#!/usr/bin/env bash
# Rebuilds the embedded default model in icnseg/assets/ from scratch (CPU, ~15 minutes):
# synthetic data -> stage 1 -> stage 2 -> sample images. The card (assets/README.md) records
# the figures of the shipped run. Usage: tools/make_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
mkdir -p "$work"
icnseg data synth --out "$work/shapes" --n 600 --seed 0 --size 256 --force
icnseg train stage1 --data "$work/shapes" --out "$work/stage1.safetensors" \
    --backbone tiny --input-size 128 --epochs 30 --lr 1e-3 --lr-step 20 --batch-size 16
icnseg train stage2 --data "$work/shapes" --stage1 "$work/stage1.safetensors" \
    --out "$work/default.safetensors" --icn-encoder tiny --epochs 12 --lr 1e-3 --lr-step 8 \
    --batch-size 8
cp "$work/default.safetensors" icnseg/assets/default.safetensors
# Sample images from a seed no training run uses.
icnseg data synth --out "$work/samples" --n 3 --seed 777 --size 256 --val-fraction 0 --force
mkdir -p icnseg/assets/samples
cp "$work"/samples/JPEGImages/*.jpg icnseg/assets/samples/
