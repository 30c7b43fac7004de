"""Fixtures for the CUDA kernel tests: the same tests run on the CPU emulator and on a GPU.

``device`` is parametrised: "emu" runs the kernels on the CPU (g++ build of cpp_ext/*.cu with
tests/runtime/kernels/emu/cuda_emu.h, see _emu.py), "cuda" on a real device (marked ``gpu``, skipped
without pycuda or a CUDA device).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("icnseg_tests_cuda_emu",
                                               Path(__file__).with_name("_emu.py"))
_emu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_emu)


def cuda_device() -> bool:
    """True when pycuda imports and sees at least one CUDA device."""
    try:
        import pycuda.driver as drv

        drv.init()
        return drv.Device.count() > 0
    except Exception:
        return False


HAVE_CUDA = cuda_device()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: Any) -> Any:
    """cpp_ext/*.cu built for the CPU emulator (skips without g++)."""
    try:
        libs = _emu.build(tmp_path_factory.mktemp("cuda_emu"))
    except FileNotFoundError:
        pytest.skip("g++ not found: cannot emulate the CUDA kernels")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"emulator build failed:\n{exc.stderr}")
    return _emu.Emulator(libs)


@pytest.fixture(params=["emu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not HAVE_CUDA, reason="needs pycuda and a CUDA device")])])
def device(request: Any, monkeypatch: Any) -> str:
    """Where the kernels run: "emu" (CPU emulator) or "cuda"."""
    if request.param == "emu":
        request.getfixturevalue("emulator").install(monkeypatch)
    else:
        from icnseg.runtime import cuda_launch

        cuda_launch.driver()
    return request.param


def to_dev(a: np.ndarray) -> Any:
    """Copy a host array to the device under test."""
    from icnseg.runtime import cuda_launch

    return cuda_launch.upload(np.ascontiguousarray(a))


def random_masks(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Random bool masks [n, H, W] of varied density, with an empty, a full and an empty
    duplicate mixed in."""
    masks = rng.random((n, *shape)) < rng.random((n, 1, 1))
    if n >= 2:
        masks[0] = False
        masks[1] = True
    if n >= 3:
        masks[2] = masks[0]
    return masks


@pytest.fixture()
def dev_helpers() -> Any:
    """to_dev and random_masks for the test modules (they cannot import conftest)."""
    return to_dev, random_masks
