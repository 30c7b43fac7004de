"""CUDA superpixel kernels (superpixel.cu) against numpy (CPU emulator; GPU when present)."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.errors import InputError
from icnseg.matching import MatchConfig, background_template, contour, match_scores
from icnseg.proposals.types import Proposals, pack_masks
from icnseg.runtime import cuda_kernels as ck
from icnseg.runtime import cuda_superpixel as sp

# (H, W, S): H*W not a multiple of 32, S below/above a 32-wide chunk, one label, many labels
CASES = [(7, 9, 5), (9, 23, 40), (1, 1, 1), (16, 16, 33), (5, 13, 65)]


def _factorised(rng: np.random.Generator, h: int, w: int, s: int, n: int) -> Proposals:
    """Random labels (every label used when there are enough pixels) and membership."""
    labels = rng.integers(0, s, (h, w)).astype(np.int32)
    labels.reshape(-1)[: min(s, h * w)] = np.arange(min(s, h * w))
    member = rng.random((n, s)) < rng.random((n, 1))
    if n >= 2:
        member[0] = False  # an empty proposal
        member[1] = True  # the whole image
    return Proposals.from_membership(labels, member)


@pytest.mark.parametrize(("h", "w", "s"), CASES)
@pytest.mark.parametrize("n", [0, 1, 7])
def test_pack_unions(device, dev_helpers, h, w, s, n) -> None:
    """Packed unions equal Proposals.from_membership(...).packed()."""
    to_dev, _ = dev_helpers
    props = _factorised(np.random.default_rng(n + s), h, w, s, n)
    got = sp.pack_unions(to_dev(props.superpixels), to_dev(props.membership.astype(np.uint8)))
    np.testing.assert_array_equal(got.get(), props.packed())


@pytest.mark.parametrize(("h", "w", "s"), CASES + [(40, 50, 13000)])  # global atomics
@pytest.mark.parametrize("t", [0, 1, 5])
def test_superpixel_sums_and_counts(device, dev_helpers, h, w, s, t) -> None:
    """Per-superpixel sums of float maps (allclose) and counts of packed maps (exact)."""
    to_dev, random_masks = dev_helpers
    rng = np.random.default_rng(t + s)
    labels = rng.integers(0, s, (h, w)).astype(np.int32)
    maps = rng.normal(size=(t, h, w)).astype(np.float32)
    maps[:, 0, 0] = 0.0
    ref = np.stack([np.bincount(labels.ravel(), m.ravel().astype(np.float64), s) for m in maps]
                   ) if t else np.zeros((0, s))
    got = sp.superpixel_sums(to_dev(maps), to_dev(labels), s).get()
    assert got.shape == (t, s) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    masks = random_masks(rng, t, (h, w))
    counts = sp.superpixel_counts(to_dev(pack_masks(masks)), to_dev(labels), s).get()
    ref_counts = np.stack([np.bincount(labels.ravel(), m.ravel(), s) for m in masks]
                          ) if t else np.zeros((0, s))
    np.testing.assert_array_equal(counts, ref_counts)


@pytest.mark.parametrize(("t", "n", "s"), [(3, 5, 7), (33, 70, 65), (1, 1, 1), (0, 4, 3),
                                           (4, 0, 3), (2, 3, 0)])
def test_member_matmul(device, dev_helpers, t, n, s) -> None:
    """[T, S] x membership^T, exact on integer sums (tiles of 32 cut at every edge)."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(t * n + s)
    sums = rng.integers(0, 1000, (t, s)).astype(np.float64)
    member = rng.random((n, s)) < 0.4
    got = sp.member_matmul(to_dev(sums), to_dev(member.astype(np.uint8))).get()
    np.testing.assert_array_equal(got, sums @ member.astype(np.float64).T)


@pytest.mark.parametrize(("h", "w", "s"), CASES)
@pytest.mark.parametrize(("k", "n"), [(3, 7), (1, 1), (2, 2)])
def test_superpixel_path_equals_match_scores(device, dev_helpers, h, w, s, k, n) -> None:
    """counts -> matmul -> Eq. 5 equals match_scores on factorised proposals bit for bit."""
    to_dev, random_masks = dev_helpers
    rng = np.random.default_rng(k + n + s)
    props = _factorised(rng, h, w, s, n)
    v = random_masks(rng, k, (h, w))
    cfg = MatchConfig(dilate_radius=1)
    ref = match_scores(v, props, cfg)
    bits = ck.pack_masks(to_dev(np.concatenate([v, contour(v), background_template(v, cfg)])))
    counts = sp.superpixel_counts(bits, to_dev(props.superpixels), s)
    sums = sp.member_matmul(counts, to_dev(props.membership))
    areas = to_dev(props.areas().astype(np.int32))
    edge_total = to_dev(contour(v).sum(axis=(1, 2)).astype(np.int32))
    got = sp.eq5_from_sums(sums, areas, edge_total, cfg.alpha, cfg.beta, cfg.gamma).get()
    np.testing.assert_array_equal(got, ref)


def test_bad_input(device, dev_helpers) -> None:
    """Mismatched shapes and dtypes are InputErrors."""
    to_dev, _ = dev_helpers
    labels = to_dev(np.zeros((4, 5), np.int32))
    with pytest.raises(InputError):
        sp.superpixel_sums(to_dev(np.zeros((2, 4, 6), np.float32)), labels, 3)
    with pytest.raises(InputError):
        sp.superpixel_counts(to_dev(np.zeros((2, 2), np.uint32)), labels, 3)
    with pytest.raises(InputError):
        sp.member_matmul(to_dev(np.zeros((2, 3))), to_dev(np.zeros((4, 2), np.uint8)))
    with pytest.raises(InputError):
        sp.eq5_from_sums(to_dev(np.zeros((5, 2))), to_dev(np.zeros(2, np.int32)),
                         to_dev(np.zeros(2, np.int32)), 1.0, 1.0, 1.0)
    with pytest.raises(InputError):
        sp.pack_unions(to_dev(np.zeros((4, 5), np.int64)), to_dev(np.zeros((1, 3), np.uint8)))
