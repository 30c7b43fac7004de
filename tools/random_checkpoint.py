#!/usr/bin/env python3
"""Write a seeded random-weight checkpoint (classifier + ICN) at a given backbone and size,
for timing full-size graphs without trained weights (tools/gpu_check.sh).
    python tools/random_checkpoint.py OUT.safetensors [--backbone resnet50] [--icn-encoder vgg16]
        [--size 448] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

import torch

from icnseg.checkpoint import save_checkpoint
from icnseg.classes import VOC_CLASSES
from icnseg.data.transforms import MEAN, STD
from icnseg.models.backbones import BACKBONES
from icnseg.models.icn import ENCODERS, ICN
from icnseg.models.prm import PRMClassifier


def main() -> int:
    """Build, seed and save the two networks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--backbone", choices=BACKBONES, default="resnet50")
    ap.add_argument("--icn-encoder", choices=ENCODERS, default="vgg16")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    classifier = PRMClassifier(args.backbone, len(VOC_CLASSES)).eval()
    icn = ICN(encoder=args.icn_encoder).eval()
    state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
    state.update({f"icn.{k}": v for k, v in icn.state_dict().items()})
    config = {"classes": list(VOC_CLASSES), "backbone": args.backbone,
              "icn_encoder": args.icn_encoder, "input_size": [args.size, args.size],
              "mean": list(MEAN), "std": list(STD),
              "peaks": {"score_threshold": 0.0}}  # random scores: accept every class's peaks
    path = save_checkpoint(args.out, state, config)
    print(f"wrote {path} ({args.backbone} + ICN {args.icn_encoder}, {args.size}x{args.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
