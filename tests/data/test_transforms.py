"""Transforms: normalisation against a float64 reference, nearest masks, consistent flip/crop."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.data.transforms import (
    MEAN,
    STD,
    crop,
    denormalize,
    hflip,
    normalize,
    random_appearance,
    random_crop,
    random_flip,
    resize,
    resize_mask,
)
from icnseg.errors import ConfigError, InputError


def _image(h: int = 30, w: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalize_matches_reference_and_round_trips() -> None:
    img = _image()
    x = normalize(img)
    assert x.shape == (3, 30, 50) and x.dtype == np.float32 and x.flags.c_contiguous
    ref = (img.astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), atol=1e-5)
    assert MEAN == (0.485, 0.456, 0.406) and STD == (0.229, 0.224, 0.225)
    np.testing.assert_array_equal(denormalize(x), img)
    x2 = normalize(img, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(x2[0], img[..., 0] / 127.5 - 1.0, atol=1e-5)
    with pytest.raises(InputError):
        normalize(img.astype(np.float32))
    with pytest.raises(InputError):
        normalize(img[..., 0])


def test_resize_is_height_width() -> None:
    img = _image()
    out = resize(img, (20, 40))
    assert out.shape == (20, 40, 3) and out.dtype == np.uint8
    flat = np.full((30, 50, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize(flat, (61, 13)), np.full((61, 13, 3), 77, np.uint8))
    with pytest.raises(ConfigError):
        resize(img, (0, 10))
    with pytest.raises(ConfigError):
        resize(img, (10,))


def test_resize_mask_nearest() -> None:
    small = np.random.default_rng(1).integers(0, 2, (4, 6)).astype(bool)
    up = resize_mask(small, (8, 12))
    assert up.dtype == bool
    np.testing.assert_array_equal(up, np.kron(small, np.ones((2, 2), bool)))
    np.testing.assert_array_equal(resize_mask(up, (4, 6)), small)
    labels = np.random.default_rng(2).choice([0, 3, 255], (5, 7)).astype(np.uint8)
    out = resize_mask(labels, (13, 11))
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 3, 255}
    stack = np.stack([small, ~small, small])
    st = resize_mask(stack, (8, 12))
    assert st.shape == (3, 8, 12)
    np.testing.assert_array_equal(st[1], ~up)
    assert resize_mask(np.zeros((0, 4, 6), bool), (8, 12)).shape == (0, 8, 12)


def test_flip_consistent_with_masks() -> None:
    img = _image()
    mask = img[..., 0] > 128  # derived from the image: must stay derived after the transform
    stack = np.stack([img[..., 1] > 100, img[..., 2] > 50])
    f_img, f_mask, f_stack = random_flip(np.random.default_rng(0), img, mask, stack, p=1.0)
    np.testing.assert_array_equal(f_img, img[:, ::-1])
    np.testing.assert_array_equal(f_mask, f_img[..., 0] > 128)
    np.testing.assert_array_equal(f_stack[1], f_img[..., 2] > 50)
    same = random_flip(np.random.default_rng(0), img, mask, p=0.0)
    np.testing.assert_array_equal(same[0], img)
    np.testing.assert_array_equal(hflip(*hflip(img, mask))[1], mask)
    flips = [random_flip(np.random.default_rng(s), img)[0][0, 0, 0] != img[0, 0, 0]
             for s in range(200)]
    assert 60 < sum(flips) < 140
    with pytest.raises(InputError):
        random_flip(np.random.default_rng(0), img, mask[:10])


def test_random_crop_consistent_with_masks() -> None:
    img = _image(40, 60)
    mask = img[..., 0] > 128
    stack = np.stack([img[..., 1] > 100] * 4)  # N=3 or 4 must not be mistaken for channels
    for seed in range(30):
        c_img, c_mask, c_stack, box = random_crop(np.random.default_rng(seed), img, mask, stack)
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 40
        assert 0.6 * 40 - 1 <= y1 - y0 <= 40 and 0.6 * 60 - 1 <= x1 - x0 <= 60
        np.testing.assert_array_equal(c_img, img[y0:y1, x0:x1])
        np.testing.assert_array_equal(c_mask, c_img[..., 0] > 128)
        assert c_stack.shape == (4, y1 - y0, x1 - x0)
        np.testing.assert_array_equal(c_stack[3], c_img[..., 1] > 100)
    a = random_crop(np.random.default_rng(5), img, mask)
    b = random_crop(np.random.default_rng(5), img, mask)
    assert a[-1] == b[-1]
    full = random_crop(np.random.default_rng(0), img, scale=(1.0, 1.0))
    assert full[-1] == (0, 0, 60, 40)
    with pytest.raises(ConfigError):
        random_crop(np.random.default_rng(0), img, scale=(0.0, 1.0))
    with pytest.raises(ConfigError):
        crop(img, box=(10, 10, 10, 20))


def test_random_appearance_zero_strength_is_the_image():
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = random_appearance(np.random.default_rng(1), img, 0.0)
    assert out is not img and np.array_equal(out, img)


def test_random_appearance_keeps_grey_pixels_grey_and_stays_in_range():
    # Saturation, contrast, brightness and channel order all map R = G = B to R = G = B.
    v = np.random.default_rng(2).integers(0, 256, (16, 16, 1), dtype=np.uint8)
    grey = np.repeat(v, 3, axis=2)
    for seed in range(20):
        out = random_appearance(np.random.default_rng(seed), grey, 1.0)
        assert out.dtype == np.uint8 and out.shape == grey.shape
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_random_appearance_matches_a_per_pixel_loop():
    img = np.random.default_rng(3).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    s = 0.6
    out = random_appearance(np.random.default_rng(4), img, s)
    rng = np.random.default_rng(4)  # the same draws, in the documented order
    sat, con = rng.uniform(1 - s, 1 + s), rng.uniform(1 - s / 2, 1 + s / 2)
    bright = rng.uniform(-40.0, 40.0) * s
    perm = rng.permutation(3) if rng.random() < s else np.arange(3)
    x = img.astype(np.float64)
    sat_img = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            g = sum(x[i, j]) / 3
            sat_img[i, j] = [g + (c - g) * sat for c in x[i, j]]
    mean = sat_img.sum() / sat_img.size
    want = np.clip(np.rint(mean + (sat_img - mean) * con + bright), 0, 255)[..., perm]
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1  # float32 vs float64 rounding


def test_random_appearance_rejects_a_strength_outside_0_1():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ConfigError, match="strength"):
        random_appearance(np.random.default_rng(0), img, 1.5)
