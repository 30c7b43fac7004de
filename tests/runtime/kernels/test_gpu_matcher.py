"""The device matcher chain (runtime/gpu_matcher.py) equals the numpy select_instances.

Runs on the CPU emulator (where it also checks that the host waits once per image) and on a
GPU when present.
"""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.errors import ConfigError, InputError
from icnseg.matching import MatchConfig, best_proposals, match_scores
from icnseg.postprocess import binary_maps, select_instances
from icnseg.proposals.types import Proposals
from icnseg.runtime import cuda_launch, gpu_matcher
from icnseg.runtime.cuda import check_cuda
from icnseg.segmenter import Stages
from icnseg.settings import SegmentConfig

CLASSES = ["a", "b", "c"]


def _maps(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    """Smooth blobs in [0, 1] (ICN-like), some close together so NMS has work."""
    yy, xx = np.mgrid[:h, :w]
    centres = rng.uniform((0, 0), (h, w), (max(k // 2, 1), 2))
    maps = np.zeros((k, h, w), np.float32)
    for i in range(k):
        cy, cx = centres[i % len(centres)] + rng.normal(0, 1.5, 2)
        r = rng.uniform(1.0, max(2.0, max(h, w) / 3))
        maps[i] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    maps += rng.random(maps.shape).astype(np.float32) * 0.1
    return np.clip(maps, 0, 1).astype(np.float32)


def _proposals(rng: np.random.Generator, h: int, w: int, n: int, v: np.ndarray) -> Proposals:
    """Unions of block superpixels (with scattered labels), the instances' own masks among
    them when expressible, an empty and a full proposal."""
    labels = (np.arange(h)[:, None] // 4) * (-(-w // 4)) + np.arange(w)[None, :] // 4
    s = int(labels.max()) + 1
    labels = np.where(rng.random((h, w)) < 0.05, rng.integers(0, s, (h, w)), labels)
    member = rng.random((n, s)) < rng.uniform(0.05, 0.6, (n, 1))
    if n >= 2:
        member[0] = False
        member[1] = True
    for i in range(min(len(v), n - 2)):  # superpixels mostly covered by instance i
        cover = np.bincount(labels.ravel(), v[i].ravel(), s) / np.bincount(labels.ravel(),
                                                                           minlength=s)
        member[2 + i] = cover > 0.5
    return Proposals.from_membership(labels.astype(np.int32), member)


def _stages(maps: np.ndarray, rng: np.random.Generator, enhanced: bool) -> Stages:
    """Stages as the backends produce them (peaks in CRM pixels at stride 4)."""
    k, h, w = maps.shape
    peaks = np.zeros((k, 4), np.float32)
    peaks[:, 0] = rng.integers(0, len(CLASSES), k)
    peaks[:, 1] = rng.integers(0, max(h // 4, 1), k)
    peaks[:, 2] = rng.integers(0, max(w // 4, 1), k)
    peaks[:, 3] = 1.0
    raw = maps * 7.0 + 0.5  # a raw PRM: another scale, min-max normalised for T = 0
    return Stages(image=np.zeros((h, w, 3), np.uint8),
                  class_conf=rng.uniform(0.3, 1.0, len(CLASSES)).astype(np.float32),
                  peaks=peaks, prm=raw, enhanced=maps if enhanced else None,
                  crm=np.zeros((len(CLASSES), max(h // 4, 1), max(w // 4, 1)), np.float32))


def _check(device, emulator_or_none, to_dev, stages: Stages, proposals: Proposals,
           cfg: SegmentConfig, factorised: bool) -> None:
    """Device results equal the numpy path, number for number."""
    cls = stages.peaks[:, 0].astype(int)
    conf = stages.class_conf[cls]
    normalize = stages.enhanced is None
    maps = to_dev(stages.prm if normalize else stages.enhanced)
    props = proposals if factorised else Proposals(proposals.masks)
    before = emulator_or_none.waits() if emulator_or_none else 0
    got = gpu_matcher.match_instances(maps, props, cls, conf, cfg, normalize=normalize)
    if emulator_or_none:
        assert emulator_or_none.waits() - before == 1  # one synchronisation per image
    k = len(cls)
    if k and len(proposals):
        idx, quality = best_proposals(match_scores(binary_maps(stages, cfg), proposals,
                                                   cfg.match))
    else:
        idx, quality = np.full(k, -1), np.full(k, -np.inf)
    np.testing.assert_array_equal(got.index, idx)
    np.testing.assert_array_equal(got.quality, quality)
    np.testing.assert_array_equal(got.score, conf * np.clip(quality, 0.0, 1.0))
    ref = select_instances(stages, proposals, CLASSES, cfg)
    assert len(got.kept) == len(ref)
    for i, inst in zip(got.kept, ref, strict=True):
        assert inst.class_index == cls[i]
        assert inst.score == got.score[i] and inst.quality == got.quality[i]
        np.testing.assert_array_equal(inst.mask, proposals.masks[got.index[i]])


@pytest.fixture()
def emu_or_none(device, request):
    """The emulator when running on it (to count host waits), else None."""
    return request.getfixturevalue("emulator") if device == "emu" else None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("factorised", [True, False])
@pytest.mark.parametrize("enhanced", [True, False])
@pytest.mark.parametrize("scoring", ["icn", "iou"])
def test_chain_equals_select_instances(device, emu_or_none, dev_helpers, seed, factorised,
                                       enhanced, scoring) -> None:
    """Random images (H*W not a multiple of 32), both score paths, ICN and raw maps, both
    rules the device implements."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(seed)
    h, w, k, n = (23, 29, 7, 30) if seed != 2 else (16, 16, 12, 45)
    maps = _maps(rng, k, h, w)
    stages = _stages(maps, rng, enhanced)
    proposals = _proposals(rng, h, w, n, maps >= 0.5)
    cfg = SegmentConfig(match=MatchConfig(scoring=scoring, dilate_radius=2 + seed,
                                          contour_width=1 + seed % 2,
                                          nms_iou=0.3 + 0.2 * seed),
                        min_quality=0.0 if seed else 0.2)
    _check(device, emu_or_none, to_dev, stages, proposals, cfg, factorised)


@pytest.mark.parametrize("case", ["no_peaks", "no_proposals", "empty_maps", "full_maps",
                                  "one_pixel"])
def test_chain_edge_cases(device, emu_or_none, dev_helpers, case) -> None:
    """K = 0, N = 0, all-background and all-foreground maps, a 1x1 image."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(4)
    h, w, k, n = (1, 1, 3, 3) if case == "one_pixel" else (9, 13, 4, 12)
    maps = _maps(rng, 0 if case == "no_peaks" else k, h, w)
    if case == "empty_maps":
        maps[:] = 0.1
    if case == "full_maps":
        maps[:] = 0.9
    stages = _stages(maps, rng, enhanced=True)
    proposals = _proposals(rng, h, w, 0 if case == "no_proposals" else n, maps >= 0.5)
    for factorised in (True, False):
        for scoring in ("icn", "iou"):
            cfg = SegmentConfig(match=MatchConfig(scoring=scoring))
            _check(device, None, to_dev, stages, proposals, cfg, factorised)


def test_uploaded_proposals_are_reused(device, dev_helpers) -> None:
    """Proposals uploaded once serve several calls with the same result."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(9)
    maps = _maps(rng, 5, 12, 20)
    proposals = _proposals(rng, 12, 20, 20, maps >= 0.5)
    once = gpu_matcher.upload_proposals(proposals)
    assert len(once) == 20 and once.labels is not None
    dense = gpu_matcher.upload_proposals(proposals, superpixels=False)
    assert dense.labels is None
    np.testing.assert_array_equal(once.packed.get(), proposals.packed())
    np.testing.assert_array_equal(once.areas.get(), proposals.areas())
    cls, conf = np.array([0, 0, 1, 1, 2]), np.full(5, 0.8)
    results = [gpu_matcher.match_instances(to_dev(maps), p, cls, conf)
               for p in (once, once, dense, proposals)]
    with check_cuda("creating a stream"):
        stream = cuda_launch.driver().Stream()
    results.append(gpu_matcher.match_instances(to_dev(maps), once, cls, conf, stream=stream))
    for r in results[1:]:
        for field in ("index", "quality", "score", "kept"):
            np.testing.assert_array_equal(getattr(r, field), getattr(results[0], field))
    with pytest.raises(InputError):
        gpu_matcher.match_instances(to_dev(maps[:, :, :-1]), once, cls, conf)
    with pytest.raises(InputError):
        gpu_matcher.match_instances(to_dev(maps), once, cls[:2], conf)


def test_unsupported_configs_say_so() -> None:
    """Only "icn" scoring with the "dilate" background, and "iou", run on the device (no GPU
    needed)."""
    for match in (MatchConfig(scoring="paper"), MatchConfig(scoring="prm"),
                  MatchConfig(background="crm")):
        with pytest.raises(ConfigError, match="CPU matcher"):
            gpu_matcher.match_instances(None, None, [], [], SegmentConfig(match=match))
    gpu_matcher.check_supported(MatchConfig())
    gpu_matcher.check_supported(MatchConfig(scoring="iou", background="crm"))  # B(V) unused
