"""CUDA matcher kernels: nvcc compile check (no GPU needed) and parity with numpy (GPU)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from icnseg.matching import MatchConfig, background_template, best_proposals, contour, match_scores
from icnseg.nms import mask_iou
from icnseg.postprocess import minmax
from icnseg.proposals.types import pack_masks

ROOT = Path(__file__).resolve().parents[2]
# H*W = 63, 65, 256, 1, 32*k+31: mostly not a multiple of 32
SHAPES = [(7, 9), (5, 13), (16, 16), (1, 1), (9, 23)]


def _cuda_device() -> bool:
    """True when pycuda imports and sees at least one CUDA device."""
    try:
        import pycuda.driver as drv

        drv.init()
        return drv.Device.count() > 0
    except Exception:
        return False


def test_nvcc_compiles_every_kernel_for_every_arch() -> None:
    """tools/check_cuda.sh compiles cpp_ext/*.cu for sm_75..sm_90 without warnings."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "check_cuda.sh")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for src in sorted((ROOT / "cpp_ext").glob("*.cu")):
        assert f"ok   cpp_ext/{src.name}" in proc.stdout


def _masks(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Random bool masks [n, H, W] with an empty and a full one mixed in."""
    masks = rng.random((n, *shape)) < rng.random((n, 1, 1))
    if n >= 2:
        masks[0] = False
        masks[1] = True
    if n >= 3:
        masks[2] = masks[0]  # an empty duplicate
    return masks


class TestKernels:
    """Every kernel against its numpy reference on random and edge inputs."""

    pytestmark = [pytest.mark.gpu,
                  pytest.mark.skipif(not _cuda_device(), reason="needs pycuda and a CUDA device")]

    @pytest.fixture(autouse=True)
    def _ck(self) -> Any:
        """The launcher module with a current CUDA context."""
        from icnseg.runtime import cuda_kernels

        cuda_kernels._drv()
        self.ck = cuda_kernels
        self.gpuarray = pytest.importorskip("pycuda.gpuarray")
        return cuda_kernels

    def _pack(self, masks: np.ndarray) -> Any:
        """Bit-pack on the device."""
        return self.ck.pack_masks(self.gpuarray.to_gpu(np.ascontiguousarray(masks)))

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("n", [0, 1, 5])
    @pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
    def test_pack_masks(self, shape: tuple[int, int], n: int, dtype: type) -> None:
        """Same bits as icnseg.proposals.types.pack_masks, padding bits 0."""
        masks = _masks(np.random.default_rng(n), n, shape)
        got = self._pack(masks.astype(dtype)).get()
        np.testing.assert_array_equal(got, pack_masks(masks))

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize(("k", "n"), [(3, 6), (0, 4), (3, 0), (0, 0), (1, 1)])
    def test_match_scores(self, shape: tuple[int, int], k: int, n: int) -> None:
        """Eq. 5 "icn" scores equal icnseg.matching.match_scores on binary V."""
        rng = np.random.default_rng(k * 10 + n)
        cfg = MatchConfig(alpha=0.9, beta=0.3, gamma=0.7)
        v = _masks(rng, k, shape)
        props = _masks(rng, n, shape)
        ref = match_scores(v, props, cfg)
        edge = contour(v, cfg.contour_width)
        bg = background_template(v, cfg)
        areas = self.gpuarray.to_gpu(props.reshape(n, -1).sum(1).astype(np.int32))
        got = self.ck.match_scores(self._pack(v), self._pack(edge), self._pack(bg),
                                   self._pack(props), areas, cfg.alpha, cfg.beta,
                                   cfg.gamma).get()
        assert got.shape == (k, n) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize(("k", "n"), [(4, 7), (4, 100), (0, 5), (3, 0), (2, 1)])
    def test_argmax_rows(self, k: int, n: int) -> None:
        """Arg-max per row like best_proposals: first index on ties, -1 without a finite max."""
        rng = np.random.default_rng(n)
        scores = rng.integers(0, 4, (k, n)).astype(np.float32)  # many ties
        if k >= 3 and n >= 2:
            scores[1] = -np.inf
            scores[2, 0] = np.nan
            scores[2, -1] = 9.0
        ref_i, ref_v = best_proposals(scores)
        index, value = self.ck.argmax_rows(self.gpuarray.to_gpu(scores))
        np.testing.assert_array_equal(index.get(), ref_i)
        np.testing.assert_array_equal(value.get(), ref_v.astype(np.float32))

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("m", [0, 1, 6])
    def test_pairwise_iou(self, shape: tuple[int, int], m: int) -> None:
        """Popcount IoU equals icnseg.nms.mask_iou (empty with empty: 0)."""
        masks = _masks(np.random.default_rng(m), m, shape)
        got = self.ck.pairwise_iou(self._pack(masks)).get()
        assert got.shape == (m, m)
        np.testing.assert_allclose(got, mask_iou(masks, masks), rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("k", [0, 1, 4])
    @pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
    def test_minmax_binarize(self, shape: tuple[int, int], k: int, t: float) -> None:
        """Per-sample min-max then >= t equals icnseg.postprocess.minmax(maps) >= t."""
        maps = np.random.default_rng(k).normal(size=(k, *shape)).astype(np.float32)
        if k >= 2:
            maps[1] = 2.5  # constant map: normalises to 0
        got = self.ck.minmax_binarize(self.gpuarray.to_gpu(maps), t).get()
        np.testing.assert_array_equal(got.astype(bool), minmax(maps) >= t)

    def test_bad_input_is_an_input_error(self) -> None:
        """Wrong dtype reaches the user as InputError, not a driver crash."""
        from icnseg.errors import InputError

        with pytest.raises(InputError):
            self.ck.pairwise_iou(self.gpuarray.to_gpu(np.zeros((2, 3), np.int64)))
