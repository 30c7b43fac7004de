"""Peak finding (Eq. 1) and peak stimulation against brute-force pixel loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icnseg.errors import ConfigError
from icnseg.models.prm import (
    PeakConfig,
    class_scores,
    find_peaks,
    gaussian_kernel,
    peak_stimulation,
    present_classes,
)


def test_gaussian_kernel_matches_formula(hand_gaussian):
    for sigma, size in [(1.0, 7), (0.7, 5), (2.0, 9)]:
        k = gaussian_kernel(sigma, size)
        assert k.dtype == np.float32 and k.shape == (size, size)
        np.testing.assert_allclose(k, hand_gaussian(sigma, size), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("filt", ["gaussian", "median"])
def test_find_peaks_equals_brute_force(seed, filt, brute_find_peaks):
    rng = np.random.default_rng(seed)
    crm = rng.normal(size=(4, 13, 11)).astype(np.float32)
    crm[1, 6, 5] += 6.0  # a clear instance peak
    present = np.array([True, True, False, True])
    cfg = PeakConfig(filter=filt, max_peaks=1000)
    got = find_peaks(crm, present, cfg)
    want = brute_find_peaks(crm, present, cfg)
    assert got.dtype == np.float32 and got.shape == (len(want), 4)
    np.testing.assert_array_equal(got[:, :3], np.array([r[:3] for r in want]))
    np.testing.assert_allclose(got[:, 3], [r[3] for r in want], rtol=1e-5, atol=1e-5)
    assert not np.any(got[:, 0] == 2)
    assert got[0, 0] == 1 and (got[0, 1], got[0, 2]) == (6, 5)


@pytest.mark.parametrize("min_response,relative", [(0.3, 0.0), (None, 0.5), (0.0, 0.4)])
def test_find_peaks_extra_filters_equal_brute_force(min_response, relative, brute_find_peaks):
    rng = np.random.default_rng(7)
    crm = rng.normal(size=(3, 14, 12)).astype(np.float32)
    cfg = PeakConfig(max_peaks=1000, min_response=min_response, relative=relative)
    got = find_peaks(crm, np.ones(3, bool), cfg)
    want = brute_find_peaks(crm, np.ones(3, bool), cfg)
    assert 0 < len(want) < len(brute_find_peaks(crm, np.ones(3, bool), PeakConfig(max_peaks=1000)))
    np.testing.assert_array_equal(got[:, :3], [r[:3] for r in want])


def test_find_peaks_tensor_input_cap_and_order(brute_find_peaks):
    rng = np.random.default_rng(3)
    crm = rng.normal(size=(3, 16, 16)).astype(np.float32)
    present = np.ones(3, bool)
    cfg = PeakConfig(max_peaks=5, sigma=1.5, kernel_size=9)
    a = find_peaks(torch.from_numpy(crm), torch.ones(3, dtype=torch.bool), cfg)
    b = find_peaks(crm, present, cfg)
    np.testing.assert_array_equal(a, b)
    want = brute_find_peaks(crm, present, cfg)
    assert len(a) == 5
    np.testing.assert_array_equal(a[:, :3], np.array([r[:3] for r in want]))
    assert np.all(np.diff(a[:, 3]) <= 0)


def test_find_peaks_ties_break_by_flat_index():
    crm = np.zeros((2, 9, 9), np.float32)
    for c, y, x in [(1, 2, 2), (0, 6, 6), (0, 2, 6), (1, 6, 2)]:
        crm[c, y, x] = 5.0
    got = find_peaks(crm, np.ones(2, bool), PeakConfig())
    np.testing.assert_array_equal(got[:, :3], [[0, 2, 6], [0, 6, 6], [1, 2, 2], [1, 6, 2]])
    assert np.all(got[:, 3] == got[0, 3])
    assert find_peaks(crm, np.zeros(2, bool), PeakConfig()).shape == (0, 4)


def brute_peak_stimulation(crm: np.ndarray, window: int = 3):
    """Original PRM aggregation by loops: first-in-raster-order window arg-max == pixel,
    value >= lower median of the whole map, score = mean of those peak values."""
    b_n, c_n, h, w = crm.shape
    r = window // 2
    scores = np.zeros((b_n, c_n))
    peaks = []
    for b in range(b_n):
        for c in range(c_n):
            m = crm[b, c]
            med = np.sort(m.ravel())[(m.size - 1) // 2]
            vals = []
            for y in range(h):
                for x in range(w):
                    best, arg = -np.inf, None
                    for yy in range(y - r, y + r + 1):
                        for xx in range(x - r, x + r + 1):
                            if 0 <= yy < h and 0 <= xx < w and m[yy, xx] > best:
                                best, arg = m[yy, xx], (yy, xx)
                    if arg == (y, x) and m[y, x] >= med:
                        vals.append(m[y, x])
                        peaks.append((b, c, y, x))
            scores[b, c] = np.mean(vals)
    return scores, peaks


@pytest.mark.parametrize("integer", [False, True])
def test_peak_stimulation_equals_brute_force(integer):
    rng = np.random.default_rng(5)
    if integer:  # many ties: exercises the first-in-window tie rule of the original
        crm = rng.integers(0, 4, size=(2, 3, 9, 10)).astype(np.float32)
    else:
        crm = rng.normal(size=(2, 3, 9, 10)).astype(np.float32)
    t = torch.from_numpy(crm).requires_grad_(True)
    scores, plist = peak_stimulation(t, window=3)
    want_scores, want_peaks = brute_peak_stimulation(crm)
    np.testing.assert_allclose(scores.detach().numpy(), want_scores, rtol=1e-5, atol=1e-6)
    assert sorted(map(tuple, plist.tolist())) == sorted(want_peaks)
    # gradient: 1/count at each counted peak, zero elsewhere
    scores.sum().backward()
    want_grad = np.zeros_like(crm)
    counts = {}
    for b, c, _, _ in want_peaks:
        counts[(b, c)] = counts.get((b, c), 0) + 1
    for b, c, y, x in want_peaks:
        want_grad[b, c, y, x] = 1.0 / counts[(b, c)]
    np.testing.assert_allclose(t.grad.numpy(), want_grad, rtol=1e-6)


def test_peak_stimulation_window5_and_upsample():
    rng = np.random.default_rng(6)
    crm = rng.normal(size=(1, 2, 8, 7)).astype(np.float32)
    scores, _ = peak_stimulation(torch.from_numpy(crm), window=5)
    np.testing.assert_allclose(scores.numpy(), brute_peak_stimulation(crm, 5)[0], rtol=1e-5)
    up_scores, plist = peak_stimulation(torch.from_numpy(crm), upsample=4)
    assert up_scores.shape == (1, 2)
    assert plist[:, 2].max() < 32 and plist[:, 3].max() < 28
    with pytest.raises(ConfigError):
        peak_stimulation(torch.from_numpy(crm), window=4)


def test_class_scores_and_presence():
    crm = torch.zeros(3, 8, 8)
    crm[0, 4, 4] = 6.0  # score: mean of peaks >= median (0) -> includes the zero plateau peak
    crm[1] -= 5.0
    crm[2] += 3.0
    probs = class_scores(crm)
    raw, _ = peak_stimulation(crm.unsqueeze(0))
    torch.testing.assert_close(probs, torch.sigmoid(raw[0]))
    assert probs.shape == (3,)
    assert present_classes(crm).tolist() == [True, False, True]
    assert class_scores(crm.unsqueeze(0)).shape == (1, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": "box"},
        {"kernel_size": 4},
        {"window": 2},
        {"sigma": 0.0},
        {"max_peaks": 0},
        {"score_threshold": 1.5},
    ],
)
def test_peak_config_validation(kwargs):
    with pytest.raises(ConfigError):
        PeakConfig(**kwargs)
