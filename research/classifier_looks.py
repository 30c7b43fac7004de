"""Image-level classification of stage-1 classifiers, per split (a look the training used or not).

    python -m research.classifier_looks --model NAME=CKPT ... --split NAME=ROOT ... --out OUT

For every model and split (a VOC-layout root; its ``val`` list, or ``train`` when ``val`` is
empty): classification mAP of the peak-stimulation class scores, and the classes missed
(present, score below t) and invented (absent, score at least t) at t = 0.5 and 0.1, the
class-presence thresholds the segmenter uses. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import time

import numpy as np

from research.report import each_model_split, model_split_parser, write_report

THRESHOLDS = (0.5, 0.1)  # stage 2's target threshold and the shipped test-time one


def class_scores(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid class scores [N,C] and presence labels bool [N,C] of every image of ``dataset``."""
    from icnseg.train.stage1 import Stage1Config, class_scores

    trained = model.config.get("stage1", {})
    peaks = {k: trained.get(k, Stage1Config.__dataclass_fields__[k].default)
             for k in ("window", "upsample")}
    logits, labels = class_scores(model.classifier, dataset, model.input_size[0], **peaks)
    return 1 / (1 + np.exp(-logits)), labels > 0


def row(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Classification mAP and the missed / invented classes at each of THRESHOLDS."""
    from icnseg.train.common import classification_map

    out = {"images": len(labels), "positives": int(labels.sum()),
           "classification_mAP": round(float(classification_map(scores, labels)), 4)}
    for t in THRESHOLDS:
        out[f"missed@{t}"] = int((labels & (scores < t)).sum())
        out[f"false@{t}"] = int((~labels & (scores >= t)).sum())
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    ap = model_split_parser(__doc__.splitlines()[0])
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for name, model, split, data in each_model_split(args):
        rows.append({"model": name, "split": split, **row(*class_scores(model, data))})
        print(rows[-1], flush=True)
    cols = ["classification_mAP"] + [f"{k}@{t}" for t in THRESHOLDS for k in ("missed", "false")]
    write_report(args.out, "Stage-1 classifiers per look", rows, ["model", "split"],
                 ["images", "positives", *cols], time.time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
