#!/usr/bin/env bash
# The honest saliency variant (issue 16, not shipped yet; benchmarks/results/
# ablation_saliency_others.md has what each command's model reaches): the ICN learns from the
# class-agnostic masks of *other* shapes in another look (`--objects others --style salient`,
# like the paper's external salient-instance set), never from the target classes' masks,
# with T = 3 and fed-back inputs. Stage 1 is the embedded model's classifier.
# Usage: tools/train_saliency_others.sh [WORKDIR]  (writes WORKDIR/saliency_others.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/saliency_others}
mkdir -p "$work"
icnseg data synth --out "$work/others" --n 400 --seed 4242 --size 256 --style salient \
    --objects others --val-fraction 0 --force
common=(--data "$work/others" --stage1 icnseg/assets/default.safetensors --icn-encoder tiny
        --batch-size 8 --lr 1e-3 --labels saliency "$work/others" --peak-min-response 0
        --peak-relative 0.2 --iterations 3 --feedback 0.5)
# 2 epochs, fed-back inputs from the second; then 3 more from those weights, fed back throughout
icnseg train stage2 "${common[@]}" --out "$work/round1.safetensors" --epochs 2 --lr-step 2 \
    --feedback-after 1
icnseg train stage2 "${common[@]}" --out "$work/saliency_others.safetensors" --epochs 3 \
    --lr-step 2 --feedback-after 0 --seed 1 --init "$work/round1.safetensors"
