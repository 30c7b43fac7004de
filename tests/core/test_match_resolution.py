"""Matching runs at the image's own size: given proposals are used as they are, built-in ones
are made from the original image, the cap (match_max_side) is honoured, and every backend
(torch, onnxruntime, the baseline) returns the same instances."""

import dataclasses

import numpy as np
import pytest

import icnseg
from icnseg.data.synth import render_sample
from icnseg.proposals.generate import generate_proposals
from icnseg.proposals.types import Proposals


@pytest.fixture(scope="module")
def ort_model():
    return icnseg.load("default", backend="onnxruntime")


def _scene(seed=3, size=256):
    image, masks, _ = render_sample(np.random.default_rng(seed), size)
    return image[:, : size - 40], masks[:, :, : size - 40]  # not square, not the input size


def test_given_proposals_come_back_pixel_exact(ort_model):
    image, gt = _scene()
    # one-pixel-thin stripes would not survive a trip through the 96-px model input
    stripes = np.zeros((2, *gt.shape[1:]), bool)
    stripes[0, ::2] = True
    stripes[1, :, ::3] = True
    given = Proposals(np.concatenate([gt, stripes]))
    got = icnseg.segment(ort_model, image, proposals=given)
    assert got, "the embedded model finds the shapes of its own training distribution"
    for inst in got:
        assert inst.mask.shape == image.shape[:2]
        assert any(np.array_equal(inst.mask, m) for m in given.masks)


def test_builtin_proposals_are_made_at_the_image_size(ort_model):
    image, _ = _scene(seed=5)
    props = generate_proposals(image)  # at the full 256x216 size
    for inst in icnseg.segment(ort_model, image):
        assert any(np.array_equal(inst.mask, m) for m in props.masks)


def test_the_cap_shrinks_matching_and_masks_still_come_back_at_image_size(ort_model):
    image, _ = _scene(seed=5)
    cfg = dataclasses.replace(ort_model.segment_config(), match_max_side=100)
    prepared = ort_model.prepare(image, config=cfg)
    assert prepared.proposals.shape == (100, 84)
    got = ort_model.select(prepared, ort_model.infer(prepared, cfg), cfg)
    assert all(inst.mask.shape == image.shape[:2] for inst in got)


def test_torch_onnxruntime_and_baseline_agree_at_image_size(ort_model):
    pytest.importorskip("torch")
    from icnseg.benchmarks.baseline import BaselineModel

    image, _ = _scene(seed=7)
    eager = icnseg.load("default", backend="torch")
    props = generate_proposals(image)
    results = [icnseg.segment(m, image, proposals=props)
               for m in (eager, ort_model, BaselineModel(eager))]
    ref = results[0]
    assert ref
    for other in results[1:]:
        assert [(i.class_index, round(i.score, 4)) for i in other] == \
            [(i.class_index, round(i.score, 4)) for i in ref]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(other, ref, strict=True))
