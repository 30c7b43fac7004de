"""What each ICN pass does to the maps of peaks that sit on an object, per split (Table 4's why).

    python -m research.pass_iou --model NAME=CKPT ... --split NAME=ROOT ... [--n 40] --out OUT

For every model and split (a VOC-layout root; its ``val`` list, or ``train`` when ``val`` is
empty; class-agnostic, so a salient set of other shapes works too): each peak's map after
pass t = 1..4, upsampled to the image and binarised as the matcher sees it, against the
ground-truth instance it overlaps best after pass 1 (followed across the passes; peaks whose
pass-1 map reaches IoU < 0.3 with every instance are off an object). Per pass: mean IoU,
precision, recall and the share at IoU >= 0.5 of the peaks on an object, and the share of the
peaks off an object whose map has moved onto one (IoU >= 0.5 with some instance: a peak of
a class that is not there, or a second peak, becomes a confident detection).
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from research.report import each_model_split, model_split_parser, write_report

PASSES = 4
ON_OBJECT = 0.3  # pass-1 IoU for a peak to count as sitting on an instance


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """IoU, precision (share of ``a`` in ``b``) and recall (share of ``b`` covered) of two
    bool masks."""
    inter = float(np.logical_and(a, b).sum())
    sizes = (np.logical_or(a, b).sum(), a.sum(), b.sum())
    return tuple(inter / max(float(n), 1.0) for n in sizes)


def peak_rows(model, dataset, n: int) -> tuple[list, list]:
    """Per peak on an object: (IoU, precision, recall) after each of PASSES passes; per peak
    off an object: its best IoU with any instance after each pass."""
    from icnseg.benchmarks.ablation import icn_passes
    from icnseg.upsample import upsampled_at_least

    cfg = model.segment_config()
    rows, off = [], []
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        prepared = model.prepare(s.image, config=cfg, build_proposals=False)
        stages = model.infer(prepared, dataclasses.replace(cfg, iterations=0))
        if not len(stages.peaks) or not len(s.instance_masks):
            continue
        maps = [upsampled_at_least(v, s.image.shape[:2], cfg.threshold)
                for v in icn_passes(model, prepared.x, stages.prm, PASSES)]
        for k in range(len(stages.peaks)):
            first = [overlap(maps[0][k], g)[0] for g in s.instance_masks]
            j = int(np.argmax(first))
            if first[j] >= ON_OBJECT:
                rows.append([overlap(m[k], s.instance_masks[j]) for m in maps])
            else:
                off.append([max(overlap(m[k], g)[0] for g in s.instance_masks) for m in maps])
    return rows, off


def _r4(v) -> float:
    return round(float(v), 4)


def summary(rows: list, off: list) -> list[dict]:
    """Per pass: peaks on an object, their mean IoU / precision / recall and share at
    IoU >= 0.5; peaks off an object and the share moved onto one."""
    a = np.asarray(rows, np.float64).reshape(len(rows), PASSES, 3)
    b = np.asarray(off, np.float64).reshape(len(off), PASSES)
    return [{"pass": t + 1, "peaks": len(rows), "IoU": _r4(a[:, t, 0].mean()),
             "precision": _r4(a[:, t, 1].mean()), "recall": _r4(a[:, t, 2].mean()),
             "IoU>=0.5": _r4((a[:, t, 0] >= 0.5).mean()), "off peaks": len(off),
             "off onto object": _r4((b[:, t] >= 0.5).mean()) if len(off) else 0.0}
            for t in range(PASSES)]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    ap = model_split_parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images per split")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = []
    for name, model, split, data in each_model_split(args, class_agnostic=True):
        for r in summary(*peak_rows(model, data, args.n)):
            out.append({"model": name, "split": split, **r})
            print(out[-1], flush=True)
    write_report(args.out, "ICN passes on peaks that sit on an object", out,
                 ["model", "split"], ["pass", "peaks", "IoU", "precision", "recall", "IoU>=0.5",
                                      "off peaks", "off onto object"],
                 time.time() - t0, n=args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
