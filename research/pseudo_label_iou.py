"""Mean IoU of stage-2 pseudo labels with the true instance, per way of making them.

    python -m research.pseudo_label_iou --data SHAPES --stage1 CKPT [--icn CKPT2] --n 80

For the first ``--n`` train images of ``--data``: the naive PRMs of the frozen classifier
(each image's own labels, as stage 2 does), the built-in proposals, and per recipe the
pseudo label of every PRM (union of its top-3 matched proposals, paper 3.2). A label's IoU
is taken with the best-overlapping true instance of its class (a peak on the background
matches nothing well, and that counts). Recipes: proposals at the model input vs at the
image's size, each scoring rule, the filled PRM blob, and (``--icn``) a second round
matching a first ICN's maps.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from icnseg.fileio import write_text
from icnseg.nms import mask_iou


def _best_iou(label: np.ndarray, gt: np.ndarray, gt_classes: np.ndarray, cls: int) -> float:
    """IoU of a pseudo label with the best-overlapping true instance of its class (0 if the
    image has none: a peak on the background gets a label that matches nothing)."""
    same = gt[gt_classes == cls]
    return float(mask_iou(label[None], same).max()) if len(same) else 0.0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""

    from icnseg.checkpoint import load_checkpoint
    from icnseg.data.transforms import resize
    from icnseg.data.voc import VocDataset
    from icnseg.eager import EagerModel
    from icnseg.matching import SCORINGS, MatchConfig
    from icnseg.models.prm import PeakConfig
    from icnseg.postprocess import proposals_for
    from icnseg.settings import SegmentConfig
    from icnseg.train.pseudo_labels import naive_prms, proposal_targets
    from icnseg.train.stage2 import first_icn_maps
    from icnseg.upsample import upsample_maps

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--stage1", required=True)
    ap.add_argument("--icn", default=None, help="a first-round checkpoint: its ICN maps matched")
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--relative", type=float, default=None,
                    help="peak filter: keep peaks >= this x the class's largest (default: "
                    "the checkpoint's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    model = EagerModel.from_checkpoint(load_checkpoint(args.stage1))
    icn = EagerModel.from_checkpoint(load_checkpoint(args.icn)).icn if args.icn else None
    ds = VocDataset(args.data, "train", classes=model.classes)
    peaks_set = dict(model.config.get("peaks", {}))
    if args.relative is not None:
        peaks_set["relative"] = args.relative
    peak_cfg = PeakConfig(**peaks_set)
    h, w = model.input_size
    recipes: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for i in range(min(args.n, len(ds))):
        s = ds[i]
        image = resize(s.image, (h, w))
        peaks, prm = naive_prms(model.classifier, image, s.labels > 0, peak_cfg, "prm",
                                model.mean, model.std)
        if not len(peaks):
            continue
        full = proposals_for(s.image, None, SegmentConfig().match_max_side)
        small = proposals_for(image, None, None)
        up = upsample_maps(prm, full.shape)
        maps = {"naive": (prm, up)}
        if icn is not None:
            v = first_icn_maps(icn, model, image, prm, passes=1)
            maps["icn round 2"] = (v, upsample_maps(v, full.shape))
        gt = s.instance_masks
        for src, (at_input, at_image) in maps.items():
            for scoring in SCORINGS:
                cfg = MatchConfig(scoring=scoring)
                for blur in (0.0, 2.0):
                    if (src != "naive" or scoring == "paper") and blur:
                        continue
                    for where, v, props in (("input", at_input, small),
                                            ("image", at_image, full)):
                        labels = proposal_targets(v, props, cfg, 3,
                                                  blur * (1 if where == "input" else
                                                          full.shape[0] / h))
                        name = f"{src}, {scoring} scoring, blur {blur:g}, proposals at {where}"
                        for lab, p in zip(labels, peaks, strict=True):
                            lab = cv2.resize(lab.astype(np.uint8), gt.shape[1:][::-1],
                                             interpolation=cv2.INTER_NEAREST).astype(bool)
                            recipes.setdefault(name, []).append(
                                _best_iou(lab, gt, s.instance_classes, int(p[0])))
        if (i + 1) % 20 == 0:
            print(f"{i + 1} images ({time.perf_counter() - t0:.0f}s)", flush=True)
    result = {k: {"mean_iou": float(np.mean(v)), "labels": len(v)} for k, v in recipes.items()}
    for k, v in sorted(result.items(), key=lambda kv: -kv[1]["mean_iou"]):
        print(f"{v['mean_iou']:.3f}  {k}  ({v['labels']} labels)")
    if args.out:
        write_text(args.out, json.dumps({"data": args.data, "stage1": args.stage1,
                                         "icn": args.icn, "n": args.n, "recipes": result},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
