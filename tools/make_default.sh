#!/usr/bin/env bash
# Rebuilds the embedded default model in icnseg/assets/ from scratch on the CPU. No step sees a
# mask of the five target classes: stage 1 learns from image labels; the ICN first learns from
# the masks of *other* shapes in another look (the paper's external salient-instance set),
# then from proposal pseudo labels on the target images (paper 3.2), matched to that first
# ICN's maps. icnseg/assets/README.md records the figures of the shipped run.
# Usage: tools/make_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}
mkdir -p "$work"
icnseg data synth --out "$work/shapes" --n 1000 --seed 0 --size 256 --force
# Stage 1, two legs: 20 epochs, then 20 more from its weights with a step decay
common=(--data "$work/shapes" --backbone tiny --input-size 96 --batch-size 8 --lr 1e-3)
icnseg train stage1 "${common[@]}" --out "$work/stage1a.safetensors" --epochs 20 --lr-step 20
icnseg train stage1 "${common[@]}" --out "$work/stage1.safetensors" --epochs 20 --lr-step 14 \
    --seed 1 --init "$work/stage1a.safetensors"
# Stage 2: saliency labels from the class-agnostic masks of 400 images of other shapes (the
# paper's external salient-instance set), with fed-back inputs for T = 3. Round 1: 2 epochs,
# fed-back inputs from the second; round 2: 3 more from its weights, fed back throughout.
# T = 1 is recorded: it measured best for this ICN (benchmarks/results/ablation.md); so is a
# class-presence threshold of 0.1 (the classifier's 0.5 misses classes), chosen on seeds 7001/7002.
icnseg data synth --out "$work/others" --n 400 --seed 4242 --size 256 --style salient \
    --objects others --val-fraction 0 --force
sal=(--data "$work/others" --stage1 "$work/stage1.safetensors" --icn-encoder tiny
     --batch-size 8 --lr 1e-3 --labels saliency "$work/others" --peak-min-response 0
     --peak-relative 0.2 --iterations 3 --feedback 0.5)
icnseg train stage2 "${sal[@]}" --out "$work/round1.safetensors" --epochs 2 --lr-step 2 \
    --feedback-after 1
icnseg train stage2 "${sal[@]}" --out "$work/default.safetensors" --epochs 3 --lr-step 2 \
    --feedback-after 0 --seed 1 --init "$work/round1.safetensors" --default-iterations 1 \
    --default-score-threshold 0.1
cp "$work/default.safetensors" icnseg/assets/default.safetensors
tools/export_default.sh
# Sample images come from a seed no training run uses:
#   icnseg data synth --out "$work/samples" --n 3 --seed 777 --size 256 --val-fraction 0
