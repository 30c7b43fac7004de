"""Matching resolution: the capped image size and the bilinear upsampling of the maps."""

import cv2
import numpy as np
import pytest

from icnseg.errors import ConfigError
from icnseg.settings import SegmentConfig
from icnseg.upsample import match_shape, upsample_maps, upsampled_at_least


def loop_bilinear(m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with aligned pixel centres, one output pixel at a time, in float64."""
    h, w = m.shape
    out = np.zeros((out_h, out_w))
    for y in range(out_h):
        sy = min(max((y + 0.5) * h / out_h - 0.5, 0.0), h - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - np.floor(sy)
        for x in range(out_w):
            sx = min(max((x + 0.5) * w / out_w - 0.5, 0.0), w - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - np.floor(sx)
            top = m[y0, x0] * (1 - fx) + m[y0, x1] * fx
            bottom = m[y1, x0] * (1 - fx) + m[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("src,dst", [((6, 8), (17, 23)), ((12, 12), (12, 40)), ((5, 9), (5, 9)),
                                     ((10, 7), (33, 7))])
def test_upsample_equals_a_pixel_loop_and_opencv(src, dst):
    rng = np.random.default_rng(sum(src + dst))
    maps = rng.random((3, *src)).astype(np.float32)
    got = upsample_maps(maps, dst)
    assert got.shape == (3, *dst) and got.dtype == np.float32
    for k in range(3):
        np.testing.assert_allclose(got[k], loop_bilinear(maps[k].astype(np.float64), *dst),
                                   atol=2e-6)
        ref = cv2.resize(maps[k], dst[::-1], interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(got[k], ref, atol=1e-4)


def test_match_shape_caps_the_long_side():
    assert match_shape((256, 256), 1024) == (256, 256)
    assert match_shape((1080, 1920), 1024) == (576, 1024)
    assert match_shape((1920, 1080), None) == (1920, 1080)
    assert match_shape((3000, 10), 100) == (100, 1)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "512"])
def test_bad_caps_are_config_errors(bad):
    with pytest.raises(ConfigError, match="match_max_side"):
        SegmentConfig(match_max_side=bad)


def test_the_cap_is_recorded():
    assert SegmentConfig(match_max_side=640).to_dict()["match_max_side"] == 640


@pytest.mark.parametrize("src,dst", [((6, 6), (256, 256)), ((12, 9), (37, 5)), ((1, 1), (4, 3)),
                                     ((8, 8), (8, 8)), ((24, 24), (96, 96))])
@pytest.mark.parametrize("threshold", [0.5, 0.1, 0.25])
def test_upsampled_at_least_is_the_upsampled_maps_thresholded(src, dst, threshold):
    rng = np.random.default_rng(len(src) + dst[0] + int(threshold * 100))
    maps = rng.random((4, *src)).astype(np.float32)
    maps[:2] = np.round(maps[:2] * 8) / 8  # pixels exactly at the threshold after upsampling
    got = upsampled_at_least(maps, dst, threshold)
    assert got.dtype == bool and got.shape == (4, *dst)
    np.testing.assert_array_equal(got, upsample_maps(maps, dst) >= threshold)
    np.testing.assert_array_equal(upsampled_at_least(maps.astype(np.float64), dst, threshold), got)


def test_upsampled_at_least_with_no_maps():
    assert upsampled_at_least(np.zeros((0, 6, 6), np.float32), (32, 32), 0.5).shape == (0, 32, 32)
