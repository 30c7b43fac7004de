"""CUDA instance scoring and greedy mask NMS (nms.cu) against numpy (emulator; GPU if any)."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.errors import InputError
from icnseg.nms import mask_nms
from icnseg.proposals.types import pack_masks
from icnseg.runtime import cuda_nms


def _problem(seed: int, m: int, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Masks with exact and near duplicates, two empty ones, tied scores and 3 classes."""
    rng = np.random.default_rng(seed)
    base = rng.random((max(m // 3, 1), *shape)) < 0.5
    masks = base[rng.integers(0, len(base), m)]
    masks[: m // 3] ^= rng.random((m // 3, *shape)) < 0.1
    if m >= 7:
        masks[5] = False
        masks[6] = False  # identical empty masks: one suppresses the other
    scores = rng.integers(0, 4, m) / 4.0
    classes = rng.integers(0, 3, m)
    return masks, scores, classes


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("m", "shape"), [(30, (10, 10)), (9, (7, 9)), (1, (3, 3)),
                                          (0, (4, 4)), (40, (1, 1)), (300, (6, 11))])
def test_mask_nms_equals_numpy(device, dev_helpers, seed, m, shape) -> None:
    """Same kept indices, same order as icnseg.nms.mask_nms, at several thresholds."""
    to_dev, _ = dev_helpers
    masks, scores, classes = _problem(seed, m, shape)
    if m > 10 and seed == 1:
        scores[3] = np.nan  # NaN scores are visited last, like np.lexsort
    packed = to_dev(pack_masks(masks))
    for thr in (0.0, 0.3, 0.5, 1.0):
        got = cuda_nms.mask_nms(packed, scores, classes, thr)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, mask_nms(masks, scores, classes, thr))
    np.testing.assert_array_equal(cuda_nms.mask_nms(packed, scores, None, 0.5),
                                  mask_nms(masks, scores, None, 0.5))


def test_walk_kernel_over_more_candidates_than_threads(device, dev_helpers) -> None:
    """The single-block walk (M = 300 > 256 threads) against a Python loop, with a random
    suppression matrix, invalid candidates and NaN / tied scores."""
    from icnseg.runtime import cuda_launch as cl

    to_dev, _ = dev_helpers
    rng = np.random.default_rng(11)
    m = 300
    scores = rng.integers(0, 20, m) / 4.0
    scores[[7, 100]] = np.nan
    valid = (rng.random(m) < 0.9).astype(np.uint8)
    suppress = (rng.random((m, m)) < 0.02).astype(np.uint8)
    order_d, removed_d = cl.empty((m,), np.int32), cl.empty((m,), np.uint8)
    kept_d, count_d = cl.empty((m,), np.int32), cl.empty((1,), np.int32)
    inputs = [to_dev(scores), to_dev(valid), to_dev(suppress)]  # alive during the launch
    cl.launch("nms_walk_kernel", 1, *(cl.ptr(a) for a in inputs), cl.ptr(order_d),
              cl.ptr(removed_d), cl.ptr(kept_d), cl.ptr(count_d), m)
    order = np.lexsort((np.arange(m), -scores))
    np.testing.assert_array_equal(order_d.get(), order)
    removed, kept = np.zeros(m, bool), []
    for i in order:
        if valid[i] and not removed[i]:
            kept.append(i)
            removed |= suppress[i].astype(bool)
    np.testing.assert_array_equal(kept_d.get()[: int(count_d.get()[0])], kept)


def test_nms_rows_skips_invalid_and_follows_rows(device, dev_helpers) -> None:
    """Candidates point at proposal rows (shared rows are identical masks); invalid ones are
    neither kept nor suppress anything: the result is mask_nms over the valid subset."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(5)
    props = rng.random((6, 9, 7)) < 0.5
    props[4] = False
    rows = np.array([0, 1, 1, 2, 4, 4, 5, -1, 3, 0, 2], np.int32)
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1], np.uint8)
    scores = rng.integers(0, 3, len(rows)) / 2.0
    classes = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1], np.int32)
    kept, count = cuda_nms.nms_rows(to_dev(pack_masks(props)), to_dev(rows), to_dev(scores),
                                    to_dev(classes), to_dev(valid), 0.5)
    got = kept.get()[: int(count.get()[0])]
    cand = np.flatnonzero(valid)
    ref = cand[mask_nms(props[rows[cand]], scores[cand], classes[cand], 0.5)]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("k", [0, 1, 9])
def test_instance_scores(device, dev_helpers, k) -> None:
    """score = conf x clip(quality, 0, 1); valid = finite quality >= min_quality."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(k)
    quality = rng.normal(0.5, 0.6, k)
    conf = rng.random(k).astype(np.float32).astype(np.float64)
    if k >= 4:
        quality[:4] = [-np.inf, 0.2, 1.7, -0.0]
    for min_q in (0.0, 0.25):
        score, valid = cuda_nms.instance_scores(to_dev(quality), to_dev(conf), min_q)
        np.testing.assert_array_equal(score.get(), conf * np.clip(quality, 0.0, 1.0))
        ref = np.isfinite(quality) & (quality >= min_q)
        np.testing.assert_array_equal(valid.get().astype(bool), ref)


def test_bad_input(device, dev_helpers) -> None:
    """Mismatched lengths and dtypes are InputErrors."""
    to_dev, _ = dev_helpers
    packed = to_dev(np.zeros((3, 2), np.uint32))
    with pytest.raises(InputError):
        cuda_nms.mask_nms(packed, np.zeros(2))
    with pytest.raises(InputError):
        cuda_nms.nms_rows(packed, to_dev(np.zeros(2, np.int32)), to_dev(np.zeros(2)),
                          to_dev(np.zeros(3, np.int32)), to_dev(np.ones(2, np.uint8)), 0.5)
    with pytest.raises(InputError):
        cuda_nms.instance_scores(to_dev(np.zeros(2, np.float32)), to_dev(np.zeros(2)), 0.0)
