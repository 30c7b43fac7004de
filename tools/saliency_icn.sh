#!/usr/bin/env bash
# Stage 2 of the embedded model: the ICN learns from the class-agnostic masks of
# WORKDIR/others (400 images of other shapes in another look: the paper's external
# salient-instance set), with fed-back inputs for T = 3. Round 1: 2 epochs, fed-back inputs
# from the second; rounds 2 and 3: 3 more each from the previous weights, fed back throughout
# (after round 2 a classifier weaker than the shipped one left maps under 0.5). T = 1 and a
# class-presence threshold of 0.1 are recorded (measured best for this ICN,
# benchmarks/results/ablation.md; the threshold chosen on seeds 7001/7002).
# Usage: tools/saliency_icn.sh WORKDIR OUT [more stage-2 flags, e.g. --icn-variant no_prm]
set -euo pipefail
work=$1 out=$2
shift 2
sal=(--data "$work/others" --stage1 "$work/stage1.safetensors" --icn-encoder tiny
     --batch-size 8 --lr 1e-3 --labels saliency "$work/others" --peak-min-response 0
     --peak-relative 0.2 --iterations 3 --feedback 0.5 "$@")
icnseg train stage2 "${sal[@]}" --out "${out%.safetensors}.round1.safetensors" --epochs 2 \
    --lr-step 2 --feedback-after 1
icnseg train stage2 "${sal[@]}" --out "${out%.safetensors}.round2.safetensors" --epochs 3 \
    --lr-step 2 --feedback-after 0 --seed 1 --init "${out%.safetensors}.round1.safetensors"
icnseg train stage2 "${sal[@]}" --out "$out" --epochs 3 --lr-step 2 --feedback-after 0 --seed 2 \
    --init "${out%.safetensors}.round2.safetensors" --default-iterations 1 \
    --default-score-threshold 0.1
