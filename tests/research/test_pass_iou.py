"""research.pass_iou: per-pass overlaps against a loop over pixels and fresh ICN runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from icnseg.data.voc import VocDataset  # noqa: E402
from icnseg.loader import load  # noqa: E402
from icnseg.models.icn import enhance  # noqa: E402
from icnseg.upsample import upsampled_at_least  # noqa: E402
from research import pass_iou  # noqa: E402


def _loop_overlap(a, b):
    inter = union = na = nb = 0
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
        inter += x and y
        union += x or y
        na += x
        nb += y
    return inter / max(union, 1), inter / max(na, 1), inter / max(nb, 1)


def test_rows_match_fresh_passes_and_a_pixel_loop(synth_dir, tmp_path):
    model = load("default", backend="torch")  # the embedded model: maps that hit objects
    data = VocDataset(synth_dir, "train", classes=None)
    cfg = model.segment_config()
    want, want_off = [], []
    for i in range(len(data)):
        s = data[i]
        p = model.prepare(s.image, config=cfg, build_proposals=False)
        st = model.infer(p, dataclasses.replace(cfg, iterations=0))
        if not len(st.peaks):
            continue
        x, r = torch.from_numpy(p.x), torch.from_numpy(st.prm)
        maps = []
        for t in range(1, pass_iou.PASSES + 1):  # each pass count run from the naive PRM again
            with torch.no_grad():
                v = enhance(model.icn, x.expand(len(r), -1, -1, -1), r, iterations=t)[:, 0]
            maps.append(upsampled_at_least(v.numpy(), s.image.shape[:2], cfg.threshold))
        for k in range(len(st.peaks)):
            first = [_loop_overlap(maps[0][k], g)[0] for g in s.instance_masks]
            if first and max(first) >= pass_iou.ON_OBJECT:
                g = s.instance_masks[int(np.argmax(first))]
                want.append([_loop_overlap(m[k], g) for m in maps])
            elif first:
                want_off.append([max(_loop_overlap(m[k], g)[0] for g in s.instance_masks)
                                 for m in maps])
    got, got_off = pass_iou.peak_rows(model, data, len(data))
    assert len(got) == len(want) > 0 and len(got_off) == len(want_off)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-9)
    np.testing.assert_allclose(np.asarray(got_off).reshape(-1, 4),
                               np.asarray(want_off).reshape(-1, 4), atol=1e-9)
    out = tmp_path / "p"
    assert pass_iou.main(["--model", "m=default", "--split", f"s={synth_dir}",
                          "--n", str(len(data)), "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["pass"] for r in rows] == [1, 2, 3, 4]
