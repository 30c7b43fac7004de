"""Algorithm 1 (icnseg.segment) on a small random-weight model: contracts and invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import icnseg  # noqa: E402
from icnseg.errors import ConfigError, InputError  # noqa: E402
from icnseg.proposals.types import Proposals  # noqa: E402
from icnseg.segmenter import run_stages  # noqa: E402
from icnseg.settings import SegmentConfig  # noqa: E402


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return icnseg.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    img[10:30, 12:34] = (220, 40, 40)
    img[36:60, 30:58] = (40, 200, 60)
    return img


def _boxes(shape, boxes):
    masks = np.zeros((len(boxes), *shape), bool)
    for m, (y0, y1, x0, x1) in zip(masks, boxes, strict=True):
        m[y0:y1, x0:x1] = True
    return Proposals(masks=masks)


def _iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 0.0


def test_instances_come_from_the_given_proposals(model, image):
    props = _boxes((64, 64), [(10, 30, 12, 34), (36, 60, 30, 58), (0, 64, 0, 64), (5, 20, 40, 60)])
    out = icnseg.segment(model, image, proposals=props)
    assert out, "the random model with threshold 0 should find peaks"
    for inst in out:
        assert inst.mask.shape == (64, 64) and inst.mask.dtype == bool
        assert any(np.array_equal(inst.mask, p) for p in props.masks)
        assert inst.class_name == model.classes[inst.class_index]
        assert 0.0 <= inst.score <= 1.0
    scores = [i.score for i in out]
    assert scores == sorted(scores, reverse=True)


def test_score_is_class_confidence_times_clipped_quality(model, image):
    from icnseg.models.prm import peak_stimulation

    props = _boxes((64, 64), [(10, 30, 12, 34), (36, 60, 30, 58), (5, 20, 40, 60)])
    out = icnseg.segment(model, image, proposals=props)
    from icnseg.data.transforms import normalize

    x = torch.from_numpy(normalize(image, model.mean, model.std))[None]
    with torch.no_grad():
        conf = torch.sigmoid(peak_stimulation(model.classifier(x))[0])[0].numpy()
    for inst in out:
        assert inst.score == pytest.approx(conf[inst.class_index] * np.clip(inst.quality, 0, 1),
                                           rel=1e-5)


def test_class_aware_nms(model, image):
    out = icnseg.segment(model, image)
    for i, a in enumerate(out):
        for b in out[i + 1:]:
            if a.class_index == b.class_index:
                assert _iou(a.mask, b.mask) < 0.5


def test_masks_come_back_at_the_image_size(model):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (50, 130, 3), dtype=np.uint8)
    for inst in icnseg.segment(model, img):
        assert inst.mask.shape == (50, 130)


def test_more_iterations_and_naive_mode(model, image):
    cfg = model.segment_config()
    s3 = run_stages(model, image, cfg)
    s0 = run_stages(model, image, dataclasses.replace(cfg, iterations=0))
    assert s0.enhanced is None and s3.enhanced.shape == s3.prm.shape
    np.testing.assert_array_equal(s0.peaks, s3.peaks)
    # T passes = the ICN applied T times to its own output (independent loop)
    from icnseg.data.transforms import normalize

    x = torch.from_numpy(normalize(s3.image, model.mean, model.std))[None]
    v = torch.from_numpy(s3.prm)[:, None]
    with torch.no_grad():
        for _ in range(3):
            v = model.icn(x.expand(len(v), -1, -1, -1), v)
    np.testing.assert_allclose(s3.enhanced, v[:, 0].numpy(), atol=1e-6)


def test_config_comes_from_the_checkpoint(model):
    assert model.segment_config().peaks.score_threshold == 0.0
    assert model.segment_config(iterations=1).iterations == 1
    with pytest.raises(ConfigError):
        SegmentConfig(iterations=-1)


def test_bad_images(model):
    with pytest.raises(InputError):
        icnseg.segment(model, np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError):
        icnseg.segment(model, np.zeros((0, 10, 3), np.uint8))
    gray = icnseg.segment(model, np.full((40, 40), 128, np.uint8))
    assert all(i.mask.shape == (40, 40) for i in gray)


def test_bgr_channels_option_equals_rgb_input(model, image):
    """channels="bgr" (cv2.imread's order) gives the instances of the RGB image."""
    rgb = icnseg.segment(model, image)
    bgr = icnseg.segment(model, np.ascontiguousarray(image[..., ::-1]), channels="bgr")
    assert [(i.class_name, i.score) for i in rgb] == [(i.class_name, i.score) for i in bgr]
    for a, b in zip(rgb, bgr, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
    batch = icnseg.segment_batch(model, [image, image])
    assert len(batch) == 2 and [len(b) for b in batch] == [len(rgb)] * 2
    with pytest.raises(ConfigError, match="channels"):
        icnseg.segment(model, image, channels="rgba")
