"""Why a ground-truth instance is missed at T = 1..4: the mask, or the peak (Table 4's ceiling).

    python -m research.miss_causes --model NAME=CKPT ... --split NAME=ROOT ... [--n 60]
        [--scoring icn iou] --out OUT

For every model, split (a VOC-layout root; its ``val`` list, or ``train`` when ``val`` is
empty), matching rule and T, each ground-truth instance is **found** (some prediction of its
class reaches mask IoU >= 0.5 with it), **peak, no mask** (not found, but a peak of its class
lies on it: what refinement could still recover) or **no peak** (not found and no peak of its
class on it: the classifier or the peak finder missed it, and no number of ICN passes can
help). Peaks sit at their cell's centre in the image. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from research.report import each_model_split, model_split_parser, write_report

PASSES = 4
FOUND_IOU = 0.5  # mAP^r@0.5's bar
CAUSES = ("found", "peak, no mask", "no peak")


def causes(gt_masks: np.ndarray, gt_classes: np.ndarray, pred_masks: np.ndarray,
           pred_classes: np.ndarray, peak_classes: np.ndarray, peak_px: np.ndarray
           ) -> list[str]:
    """The cause (one of CAUSES) of each ground-truth instance of one image."""
    from icnseg.nms import mask_iou

    iou = (mask_iou(gt_masks, pred_masks) if len(pred_masks)
           else np.zeros((len(gt_masks), 0)))
    out = []
    for j, (g, c) in enumerate(zip(gt_masks, gt_classes, strict=True)):
        if ((pred_classes == c) & (iou[j] >= FOUND_IOU)).any():
            out.append("found")
        elif any(k == c and g[r, q] for k, (r, q) in zip(peak_classes, peak_px, strict=True)):
            out.append("peak, no mask")
        else:
            out.append("no peak")
    return out


def count_causes(model, dataset, n: int, scoring: str) -> dict[int, dict[str, int]]:
    """{T: {cause: instances}} over the first ``n`` images of ``dataset``."""
    from icnseg.benchmarks.ablation import icn_passes
    from icnseg.postprocess import peak_pixels

    base = model.segment_config()
    cfg = dataclasses.replace(base, match=dataclasses.replace(base.match, scoring=scoring))
    counts = {t: dict.fromkeys(CAUSES, 0) for t in range(1, PASSES + 1)}
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        shape = s.image.shape[:2]
        prepared = model.prepare(s.image, config=cfg)
        stages = model.infer(prepared, dataclasses.replace(cfg, iterations=0))
        passes = icn_passes(model, prepared.x, stages.prm, PASSES) if len(stages.peaks) else []
        px = peak_pixels(stages.peaks, stages.crm.shape[1:], shape)
        for t in range(1, PASSES + 1):
            inst = []
            if passes:
                stages.enhanced = passes[t - 1]
                inst = model.select(prepared, stages, dataclasses.replace(cfg, iterations=t))
            masks = np.stack([x.mask for x in inst]) if inst else np.zeros((0, *shape), bool)
            for cause in causes(s.instance_masks, np.asarray(s.instance_classes), masks,
                                np.array([x.class_index for x in inst], int),
                                stages.peaks[:, 0].astype(int), px):
                counts[t][cause] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    from icnseg.matching import SCORINGS

    ap = model_split_parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="images per split")
    ap.add_argument("--scoring", nargs="+", choices=SCORINGS, default=["icn"])
    args = ap.parse_args(argv)
    t0 = time.time()
    out = []
    for name, model, split, data in each_model_split(args):
        for scoring in args.scoring:
            for t, c in count_causes(model, data, args.n, scoring).items():
                out.append({"model": name, "split": split, "scoring": scoring, "T": t,
                            "instances": sum(c.values()), **c})
                print(out[-1], flush=True)
    write_report(args.out, "Missed instances: the mask or the peak", out,
                 ["model", "split", "scoring"], ["T", "instances", *CAUSES],
                 time.time() - t0, n=args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
