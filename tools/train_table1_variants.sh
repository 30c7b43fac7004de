#!/usr/bin/env bash
# Table 1's ICN ablations for both variants, from a tools/make_default.sh WORKDIR, each trained
# exactly as its full ICN with only the architecture changed: "no_fusion" (w/o CFM and DFM) and
# "no_prm" (w/o input PRM).
# 1. saliency: WORKDIR/{no_fusion,no_prm}.safetensors as the embedded ICN (tools/saliency_icn.sh);
# 2. proposals: WORKDIR/proposal_{default,no_fusion,no_prm}.safetensors, each continuing from
#    its saliency ICN with the same pseudo labels (tools/train_proposal_variant.sh).
# Runs go two at a time, one thread each; logs beside the checkpoints; a checkpoint that is
# already there is kept (a rerun resumes where the last one stopped).
# Usage: tools/train_table1_variants.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default}

side_by_side() {  # run each "NAME command..." line in the background unless
    local pids=() line name  # WORKDIR/NAME.safetensors exists; fail if any fails
    while read -r line; do
        name=${line%% *}
        [ -f "$work/$name.safetensors" ] && continue
        OMP_NUM_THREADS=1 bash -c "${line#* }" > "$work/$name.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
}

side_by_side <<EOT
no_fusion tools/saliency_icn.sh $work $work/no_fusion.safetensors --icn-variant no_fusion
no_prm tools/saliency_icn.sh $work $work/no_prm.safetensors --icn-variant no_prm
EOT
[ -d "$work/shapes500" ] || icnseg data synth --out "$work/shapes500" --n 500 --seed 0 --size 256
side_by_side <<EOT
proposal_default tools/train_proposal_variant.sh $work default
proposal_no_fusion tools/train_proposal_variant.sh $work no_fusion
EOT
side_by_side <<EOT
proposal_no_prm tools/train_proposal_variant.sh $work no_prm
EOT
