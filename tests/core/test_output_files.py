"""Tests of icnseg.outputs: RLE, bbox, the per-image JSON record, overlay and atomic writes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from icnseg.errors import InputError
from icnseg.instance import Instance, mask_bbox
from icnseg.output.overlay import instance_color, place_label, render_overlay
from icnseg.output.record import instances_to_json, write_result
from icnseg.rle import mask_to_rle, rle_to_mask

# pycocotools' decode predates numpy 2's __array__(copy=...) and warns; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _rect(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (40, 33), (3, 200)])
def test_rle_round_trip_random(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = rng.random(shape) < density
        rle = mask_to_rle(mask)
        assert isinstance(rle["counts"], str)
        assert rle["size"] == list(shape)
        json.dumps(rle)  # JSON-serialisable
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        # independent decoder: pycocotools directly, and its area
        ref = mask_util.decode({"size": list(shape), "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(ref.astype(bool), mask)
        assert mask_util.area({"size": list(shape), "counts": rle["counts"].encode()}) == mask.sum()


def test_rle_uncompressed_counts_and_bytes() -> None:
    # 3x2 column-major runs: 1 zero, 2 ones, 3 zeros -> column 0 = [0,1,1], column 1 = [0,0,0]
    mask = rle_to_mask({"size": [3, 2], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(mask, np.array([[0, 0], [1, 0], [1, 0]], bool))
    rle = mask_to_rle(mask)
    np.testing.assert_array_equal(rle_to_mask({**rle, "counts": rle["counts"].encode()}), mask)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"size": [4, 4]},
        {"size": [4], "counts": "0"},
        {"size": [4, 4], "counts": [3, 3]},  # covers 6 of 16 pixels
        {"size": [4, 4], "counts": "\x7f\x7f"},  # characters outside the RLE alphabet
        {"size": [4, 4], "counts": "g"},  # continuation bit set, then nothing (truncated)
        {"size": [4, 4], "counts": "52"},  # 5 + 2 pixels, not 16
        {"size": [4, 4], "counts": 12},
    ],
)
def test_rle_to_mask_rejects_malformed(bad: object) -> None:
    with pytest.raises(InputError):
        rle_to_mask(bad)


def test_bbox_is_derived_from_mask() -> None:
    m = _rect(20, 30, 3, 5, 9, 12)
    assert mask_bbox(m) == (5, 3, 12, 9)
    inst = Instance("circle", 0, 0.9, m)
    assert inst.bbox == (5, 3, 12, 9)
    assert mask_bbox(np.zeros((4, 4), bool)) == (0, 0, 0, 0)
    # the same box pycocotools derives ([x, y, w, h])
    x, y, w, h = mask_util.toBbox(mask_util.encode(np.asfortranarray(m.astype(np.uint8))))
    assert (x, y, x + w, y + h) == inst.bbox


def test_instances_to_json_matches_design_format() -> None:
    h, w = 24, 32
    insts = [
        Instance("square", 1, 0.75, _rect(h, w, 2, 3, 10, 12), peak=(5, 6), quality=0.5),
        Instance("circle", 0, np.float32(0.5), _rect(h, w, 12, 0, 20, 8)),
    ]
    rec = instances_to_json("img.jpg", h, w, insts)
    rec = json.loads(json.dumps(rec, allow_nan=False))  # survives JSON
    assert set(rec) == {"image", "height", "width", "instances"}  # settings are in run.json
    assert (rec["image"], rec["height"], rec["width"]) == ("img.jpg", h, w)
    first, second = rec["instances"]
    assert {"class", "score", "bbox", "mask"} <= set(first)
    assert set(second) == {"class", "score", "bbox", "mask"}  # optional keys only when known
    assert first["class"] == "square" and first["score"] == 0.75
    assert first["bbox"] == [3, 2, 12, 10] and first["peak"] == [5, 6]
    assert isinstance(second["score"], float)
    for r, inst in zip(rec["instances"], insts, strict=True):
        np.testing.assert_array_equal(rle_to_mask(r["mask"]), inst.mask)
    with pytest.raises(InputError):
        instances_to_json("x", h + 1, w, insts)


def test_write_result_writes_json_and_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    insts = [Instance("star", 3, 0.6, _rect(30, 40, 5, 5, 20, 25))]
    jpath, ppath = write_result(tmp_path / "out", "a", image, insts)
    assert jpath == tmp_path / "out" / "a.json" and ppath == tmp_path / "out" / "a.png"
    rec = json.loads(jpath.read_text())
    assert rec == json.loads(json.dumps(instances_to_json("a", 30, 40, insts)))
    png = cv2.imread(str(ppath), cv2.IMREAD_COLOR)
    expect = render_overlay(image, insts)
    np.testing.assert_array_equal(cv2.cvtColor(png, cv2.COLOR_BGR2RGB), expect)  # PNG lossless
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a.png"]  # no temps
    # with a PRM panel the PNG is twice as wide
    _, ppath = write_result(tmp_path / "out", "b", image, insts, prm=rng.random((1, 8, 10)))
    assert cv2.imread(str(ppath)).shape == (30, 80, 3)


def test_render_overlay_shape_and_changes() -> None:
    h, w = 60, 80
    image = np.full((h, w, 3), 128, np.uint8)
    m = _rect(h, w, 30, 40, 50, 70)
    insts = [Instance("circle", 0, 0.9, m), Instance("cross", 4, 0.3, _rect(h, w, 35, 5, 55, 20))]
    out = render_overlay(image, insts)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert np.all(np.any(out[m] != image[m], axis=-1))  # every mask pixel is tinted
    assert np.array_equal(out[:10, 25:35], image[:10, 25:35])  # far from masks and labels
    np.testing.assert_array_equal(render_overlay(image, insts), render_overlay(image, insts))
    assert len({instance_color(i) for i in range(12)}) == 12
    assert render_overlay(image, []).tolist() == image.tolist()
    prm = np.zeros((2, 15, 20), np.float32)
    prm[0, 8, 12] = 5.0
    panel = render_overlay(image, insts, prm=prm)
    assert panel.shape == (h, 2 * w, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :w], out)
    assert not np.array_equal(panel[34, w + 48], panel[0, w])  # heat near the peak
    with pytest.raises(InputError):
        render_overlay(image, [Instance("circle", 0, 1.0, np.ones((5, 5), bool))])


def test_labels_never_overlap_while_there_is_room() -> None:
    """Ten objects with the same box: every label rectangle stays inside the image and no
    two overlap (checked pairwise by brute force)."""
    taken: list = []
    for _ in range(10):
        taken.append(place_label((60, 14), (40, 100, 120, 160), taken, (256, 256)))
    for i, a in enumerate(taken):
        assert 0 <= a[0] < a[2] <= 256 and 0 <= a[1] < a[3] <= 256
        for b in taken[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_one_label_per_mask_and_one_colour_per_instance() -> None:
    h, w = 120, 160
    image = np.full((h, w, 3), 90, np.uint8)
    shared = _rect(h, w, 40, 40, 80, 90)
    insts = [Instance("star", 3, 0.95, shared), Instance("triangle", 2, 0.86, shared),
             Instance("star", 3, 0.7, _rect(h, w, 10, 100, 30, 150)),
             Instance("star", 3, 0.6, _rect(h, w, 90, 100, 110, 150))]
    out = render_overlay(image, insts)
    # the two same-class stars are tinted differently (a colour per instance, not per class)
    assert not np.array_equal(out[27, 145], out[105, 145])
    # the shared mask gets one label naming both classes: one dark label box above it
    dark = np.all(out[:40, 40:95] <= 25, axis=-1)
    rows = np.flatnonzero(dark.any(axis=1))
    assert rows.size and rows.max() - rows.min() < 25  # one label, not two stacked
