"""research.classifier_looks: the missed / invented counts against a loop over the label files."""

from __future__ import annotations

import json

import numpy as np

from icnseg.checkpoint import load_checkpoint
from icnseg.data.voc import VocDataset
from icnseg.eager import EagerModel
from research import classifier_looks


def test_counts_match_a_loop_over_images_and_classes(tiny_checkpoint, synth_dir, tmp_path):
    out = tmp_path / "looks"
    assert classifier_looks.main(["--model", f"m={tiny_checkpoint}", "--split",
                                  f"s={synth_dir}", "--out", str(out)]) == 0
    got = json.loads(out.with_suffix(".json").read_text())["rows"][0]
    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    data = VocDataset(synth_dir, "val", classes=model.classes)
    scores, labels = classifier_looks.class_scores(model, data)
    assert scores.shape == labels.shape == (len(data), len(model.classes))
    for t in classifier_looks.THRESHOLDS:
        missed = invented = 0
        for i in range(len(data)):
            present = set(np.flatnonzero(data[i].labels > 0))
            for c in range(len(model.classes)):
                missed += c in present and scores[i, c] < t
                invented += c not in present and scores[i, c] >= t
        assert (got[f"missed@{t}"], got[f"false@{t}"]) == (missed, invented)
    assert got["positives"] == sum(int((data[i].labels > 0).sum()) for i in range(len(data)))
    assert "| m | s |" in out.with_suffix(".md").read_text()
