"""Image-level classification of stage-1 classifiers, per split (a look the training used or not).

    python -m research.classifier_looks --model NAME=CKPT ... --split NAME=ROOT ... --out OUT

For every model and split (a VOC-layout root; its ``val`` list, or ``train`` when ``val`` is
empty): classification mAP of the peak-stimulation class scores, and the classes missed
(present, score below t) and invented (absent, score at least t) at t = 0.5 and 0.1, the
class-presence thresholds the segmenter uses. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from icnseg.fileio import write_text

THRESHOLDS = (0.5, 0.1)  # stage 2's target threshold and the shipped test-time one


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, value


def class_scores(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid class scores [N,C] and presence labels bool [N,C] of every image of ``dataset``."""
    import torch

    from icnseg.data.transforms import normalize, resize
    from icnseg.models.prm import peak_stimulation

    window, upsample = (model.config.get("stage1", {}).get(k, d) for k, d in
                        (("window", 3), ("upsample", 1)))
    scores, labels = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            x = torch.from_numpy(normalize(resize(s.image, model.input_size), model.mean,
                                           model.std))[None]
            v, _ = peak_stimulation(model.classifier(x), window=window, upsample=upsample)
            scores.append(torch.sigmoid(v[0]).numpy())
            labels.append(s.labels > 0)
    return np.stack(scores), np.stack(labels)


def row(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Classification mAP and the missed / invented classes at each of THRESHOLDS."""
    from icnseg.train.common import classification_map

    out = {"images": len(labels), "positives": int(labels.sum()),
           "classification_mAP": round(float(classification_map(scores, labels)), 4)}
    for t in THRESHOLDS:
        out[f"missed@{t}"] = int((labels & (scores < t)).sum())
        out[f"false@{t}"] = int((~labels & (scores >= t)).sum())
    return out


def _markdown(rows: list[dict], seconds: float, machine: dict) -> str:
    cols = ["classification_mAP"] + [f"{k}@{t}" for t in THRESHOLDS for k in ("missed", "false")]
    where = f"{machine['cpu']}, {machine['cores']} cores, git {machine['git']}"
    lines = ["# Stage-1 classifiers per look", "", f"Machine: {where}; {seconds:.0f} s.",
             "", "| model | split | images | positives | " + " | ".join(cols) + " |",
             "|---|---|---:|---:|" + "---:|" * len(cols)]
    for r in rows:
        vals = " | ".join(str(r[c]) for c in cols)
        lines.append(f"| {r['model']} | {r['split']} | {r['images']} | {r['positives']} | {vals} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    from benchmarks.machine import machine_info
    from icnseg.checkpoint import load_checkpoint
    from icnseg.data.voc import VocDataset
    from icnseg.eager import EagerModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=_pair, action="append", required=True, metavar="NAME=CKPT")
    ap.add_argument("--split", type=_pair, action="append", required=True, metavar="NAME=ROOT")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for name, path in args.model:
        model = EagerModel.from_checkpoint(load_checkpoint(path))
        for split, root in args.split:
            data = VocDataset(root, "val", classes=model.classes)
            if not len(data):
                data = VocDataset(root, "train", classes=model.classes)
            rows.append({"model": name, "split": split, **row(*class_scores(model, data))})
            print(rows[-1], flush=True)
    seconds = time.time() - t0
    machine = machine_info()
    write_text(f"{args.out}.json", json.dumps({"machine": machine, "rows": rows,
                                               "seconds": seconds}, indent=1))
    write_text(f"{args.out}.md", _markdown(rows, seconds, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
