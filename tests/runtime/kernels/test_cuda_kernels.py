"""CUDA mask kernels (matcher.cu, morph.cu): nvcc compile check, launch table vs sources,
and every kernel against its numpy reference (CPU emulator; GPU when present)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from icnseg.errors import InputError
from icnseg.matching import MatchConfig, background_template, best_proposals, contour, match_scores
from icnseg.nms import mask_iou
from icnseg.postprocess import minmax
from icnseg.proposals.types import pack_masks
from icnseg.runtime import cuda_kernels as ck
from icnseg.runtime.cuda_launch import FATBIN_ARCHS, KERNELS, MODULES

ROOT = Path(__file__).resolve().parents[3]
# H*W = 63, 65, 256, 1, 32*k+31, 2: mostly not a multiple of 32
SHAPES = [(7, 9), (5, 13), (16, 16), (1, 1), (9, 23), (2, 1)]
_TYPES = {"int": "i", "float": "f", "double": "d"}


def test_nvcc_compiles_every_kernel_for_every_arch() -> None:
    """tools/check_cuda.sh compiles cpp_ext/*.cu for sm_75..sm_90 without warnings."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "check_cuda.sh")], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for src in sorted((ROOT / "cpp_ext").glob("*.cu")):
        assert f"ok   cpp_ext/{src.name}" in proc.stdout


def test_launch_table_matches_the_sources() -> None:
    """Every extern "C" kernel is in KERNELS with its module and argument format, and back."""
    found = {}
    for src in sorted((ROOT / "cpp_ext").glob("*.cu")):
        text = src.read_text()
        for name, params in re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', text):
            codes = "".join("P" if "*" in p else _TYPES[p.split()[-2]]
                            for p in params.split(","))
            found[name] = (src.stem, codes)
    assert found == KERNELS
    assert set(MODULES) == {p.stem for p in (ROOT / "cpp_ext").glob("*.cu")}


def test_compile_check_covers_the_fatbin_archs() -> None:
    """tools/check_cuda.sh checks the architectures the shipped fatbins carry."""
    text = (ROOT / "tools" / "check_cuda.sh").read_text()
    archs = re.search(r"^ARCHS=\(([\d ]+)\)", text, re.M).group(1).split()
    assert tuple(int(a) for a in archs) == FATBIN_ARCHS


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [0, 1, 5])
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
def test_pack_masks(device, dev_helpers, shape, n, dtype) -> None:
    """Same bits as icnseg.proposals.types.pack_masks, padding bits 0."""
    to_dev, random_masks = dev_helpers
    masks = random_masks(np.random.default_rng(n), n, shape)
    got = ck.pack_masks(to_dev(masks.astype(dtype))).get()
    np.testing.assert_array_equal(got, pack_masks(masks))
    np.testing.assert_array_equal(ck.popcount_rows(to_dev(got)).get(),
                                  masks.sum(axis=(1, 2)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("k", "n"), [(3, 6), (0, 4), (3, 0), (1, 1)])
def test_match_scores(device, dev_helpers, shape, k, n) -> None:
    """Eq. 5 "icn" scores equal icnseg.matching.match_scores bit for bit (binary V)."""
    to_dev, random_masks = dev_helpers
    rng = np.random.default_rng(k * 10 + n)
    cfg = MatchConfig(alpha=0.9, beta=0.3, gamma=0.7, dilate_radius=2)
    v = random_masks(rng, k, shape)
    props = random_masks(rng, n, shape)
    ref = match_scores(v, props, cfg)
    packed = [ck.pack_masks(to_dev(x)) for x in (v, contour(v, 1), background_template(v, cfg))]
    areas = to_dev(props.sum(axis=(1, 2)).astype(np.int32))
    got = ck.match_scores(*packed, ck.pack_masks(to_dev(props)), areas, cfg.alpha, cfg.beta,
                          cfg.gamma).get()
    assert got.shape == (k, n) and got.dtype == np.float64
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(("k", "n"), [(4, 7), (4, 100), (0, 5), (3, 0), (2, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_rows(device, dev_helpers, k, n, dtype) -> None:
    """Arg-max per row like best_proposals: first index on ties, -1 without a finite max."""
    to_dev, _ = dev_helpers
    rng = np.random.default_rng(n)
    scores = rng.integers(0, 4, (k, n)).astype(dtype)  # many ties
    if k >= 3 and n >= 2:
        scores[1] = -np.inf
        scores[2, 0] = np.nan
        scores[2, -1] = 9.0
    if k >= 4 and n >= 2:
        scores[3, 1] = np.inf  # an infinite best is not a match either
    ref_i, ref_v = best_proposals(scores)
    index, value = ck.argmax_rows(to_dev(scores))
    np.testing.assert_array_equal(index.get(), ref_i)
    assert value.get().dtype == dtype
    np.testing.assert_array_equal(value.get(), ref_v.astype(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m", [0, 1, 6])
def test_pairwise_iou(device, dev_helpers, shape, m) -> None:
    """Popcount IoU equals icnseg.nms.mask_iou (empty with empty: 0)."""
    to_dev, random_masks = dev_helpers
    masks = random_masks(np.random.default_rng(m), m, shape)
    got = ck.pairwise_iou(ck.pack_masks(to_dev(masks))).get()
    assert got.shape == (m, m)
    np.testing.assert_allclose(got, mask_iou(masks, masks), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 1.0])  # float32(0.7) < 0.7
def test_minmax_binarize(device, dev_helpers, shape, k, t) -> None:
    """minmax(maps) >= t per sample (constant map -> 0), and maps >= t without normalising."""
    to_dev, _ = dev_helpers
    maps = np.random.default_rng(k).normal(size=(k, *shape)).astype(np.float32)
    if k >= 2:
        maps[1] = 2.5  # constant map: normalises to 0
    if k >= 3:
        maps[2] = np.float32(t)  # exactly at the threshold
    got = ck.minmax_binarize(to_dev(maps), t).get()
    assert got.shape == maps.shape and got.dtype == np.uint8
    if k:  # postprocess.minmax cannot reshape an empty stack
        np.testing.assert_array_equal(got.astype(bool), minmax(maps) >= t)
    raw = ck.minmax_binarize(to_dev(maps), t, normalize=False).get()
    assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 1}
    np.testing.assert_array_equal(raw.astype(bool), maps >= t)


@pytest.mark.parametrize("shape", SHAPES + [(12, 40)])
@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("width", [0, 1, 2, 5])
def test_contour(device, dev_helpers, shape, k, width) -> None:
    """dilate XOR erode with outside pixels ignored, equal to icnseg.matching.contour."""
    to_dev, random_masks = dev_helpers
    v = random_masks(np.random.default_rng(width), k, shape)
    got = ck.contour(to_dev(v), width).get()
    assert got.dtype == np.uint8 and got.shape == v.shape
    np.testing.assert_array_equal(got, contour(v, width).astype(np.uint8))


@pytest.mark.parametrize("shape", SHAPES + [(12, 40)])
@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("radius", [0, 1, 5])
def test_background(device, dev_helpers, shape, k, radius) -> None:
    """NOT dilate(V), equal to background_template(V) with background="dilate"."""
    to_dev, random_masks = dev_helpers
    v = random_masks(np.random.default_rng(radius + 7), k, shape)
    if k:
        v[-1] = False
        v[-1, shape[0] // 2, shape[1] // 2] = True  # one pixel: a (2r+1)^2 square hole
    got = ck.background(to_dev(v.astype(np.uint8)), radius).get()
    ref = background_template(v, MatchConfig(dilate_radius=radius))
    np.testing.assert_array_equal(got, ref.astype(np.uint8))


def test_out_views_and_bad_input(device, dev_helpers) -> None:
    """out= writes into a row slice; wrong dtype/shape is an InputError, not a driver crash."""
    to_dev, random_masks = dev_helpers
    v = random_masks(np.random.default_rng(0), 2, (5, 6))
    buf = to_dev(np.zeros((6, 5, 6), np.uint8))
    ck.contour(to_dev(v), 1, out=buf[2:4])
    got = buf.get()
    np.testing.assert_array_equal(got[2:4], contour(v, 1))
    assert not got[:2].any() and not got[4:].any()
    with pytest.raises(InputError):
        ck.pairwise_iou(to_dev(np.zeros((2, 3), np.int64)))
    with pytest.raises(InputError):
        ck.contour(to_dev(v), 1, out=buf[:3])
    with pytest.raises(InputError):
        ck.background(to_dev(v), -1)
    with pytest.raises(InputError):
        ck.pack_masks(np.zeros((1, 2, 2), bool))  # a host array


@pytest.mark.parametrize("src,dst", [((6, 8), (17, 23)), ((12, 40), (12, 40)), ((5, 9), (31, 4)),
                                     ((24, 24), (96, 96))])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_upsample(device, dev_helpers, src, dst, k) -> None:
    """Bilinear upsampling, bit-identical to icnseg.upsample.upsample_maps."""
    from icnseg.upsample import upsample_maps

    to_dev, _ = dev_helpers
    maps = np.random.default_rng(k + src[0]).random((k, *src)).astype(np.float32)
    got = ck.upsample(to_dev(maps), dst).get()
    assert got.dtype == np.float32 and got.shape == (k, *dst)
    np.testing.assert_array_equal(got, upsample_maps(maps, dst))
