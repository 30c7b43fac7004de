"""Launch infrastructure for the CUDA kernels in ``cpp_ext/`` (pycuda, imported lazily).

Importing this module imports nothing from pycuda; the first kernel call does. Each
``cpp_ext/<stem>.cu`` is one CUDA module, loaded from ``cpp_ext/<stem>.fatbin`` when that
exists and is newer than its sources (built by ``cpp_ext/CMakeLists.txt``), else compiled by
pycuda (which caches it). ``KERNELS`` names every kernel with its module and argument format
(``P`` pointer, ``i`` int32, ``f`` float32, ``d`` float64); kernels are launched through
pycuda's prepared calls with that format, asynchronously on the given stream. Device arrays
are C-contiguous ``pycuda.gpuarray.GPUArray``s in the current CUDA context (the device's
primary context is made current when there is none).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, IcnsegError, InputError
from icnseg.runtime.cuda import check_cuda, cuda_driver

SRC_DIR = Path(__file__).resolve().parent.parent / "cpp_ext"
COMMON = SRC_DIR / "common.cuh"
BLOCK = 256  # threads per block for every kernel (8 warps)
WARPS = BLOCK // 32
MAX_GRID = 1 << 16  # kernels are grid-stride, so capping the grid is always correct

# kernel name -> (module stem in cpp_ext/, argument format); checked against the .cu sources.
KERNELS: dict[str, tuple[str, str]] = {
    "pack_masks_kernel": ("matcher", "PPiii"),
    "match_scores_kernel": ("matcher", "PPPPPPiiiddd"),
    "argmax_kernel": ("matcher", "PPPii"),
    "argmax_f64_kernel": ("matcher", "PPPii"),
    "popcount_rows_kernel": ("matcher", "PPii"),
    "pairwise_iou_kernel": ("matcher", "PPii"),
    "minmax_binarize_kernel": ("matcher", "PPiifi"),
    "morph_rows_kernel": ("morph", "PPiiii"),
    "morph_cols_kernel": ("morph", "PPiiiii"),
    "upsample_kernel": ("upsample", "PPPPPPPPiiiii"),
    "pack_unions_kernel": ("superpixel", "PPPiiii"),
    "sp_sums_kernel": ("superpixel", "PPPiiii"),
    "sp_counts_kernel": ("superpixel", "PPPiiiii"),
    "member_matmul_kernel": ("superpixel", "PPPiii"),
    "eq5_sums_kernel": ("superpixel", "PPPPiiddd"),
    "instance_scores_kernel": ("nms", "PPPPid"),
    "nms_suppress_kernel": ("nms", "PPPPPiid"),
    "nms_walk_kernel": ("nms", "PPPPPPPi"),
}
MODULES = tuple(sorted({stem for stem, _ in KERNELS.values()}))
_loaded: dict[str, Any] = {}  # "ctx": context handle the cache belongs to, stem -> module, ...


def driver() -> Any:
    """pycuda.driver with a context current (``runtime.cuda.cuda_driver``: the primary one)."""
    return cuda_driver()


def gpuarray() -> Any:
    """pycuda.gpuarray, imported lazily."""
    with check_cuda("importing pycuda.gpuarray", unavailable=True):
        return importlib.import_module("pycuda.gpuarray")


def sources(stem: str) -> tuple[Path, ...]:
    """The files module ``stem`` is built from (its .cu first)."""
    return SRC_DIR / f"{stem}.cu", COMMON


def _load(drv: Any, stem: str) -> Any:
    """Load module ``stem``: its fatbin when fresh, else compile its .cu with pycuda."""
    srcs = sources(stem)
    fatbin = SRC_DIR / f"{stem}.fatbin"
    times = [p.stat().st_mtime for p in srcs if p.is_file()]
    fresh = fatbin.is_file() and all(fatbin.stat().st_mtime >= t for t in times)
    if not fresh and not srcs[0].is_file():
        raise BackendUnavailable(f"neither {fatbin} nor {srcs[0]} is installed")
    with check_cuda(f"loading the {stem} kernels", unavailable=True):
        if fresh:
            return drv.module_from_file(str(fatbin))
        compiler = importlib.import_module("pycuda.compiler")
        return compiler.SourceModule(srcs[0].read_text(), no_extern_c=True,
                                     include_dirs=[str(SRC_DIR)], options=["-O3"])


def function(name: str) -> Any:
    """The prepared kernel ``name`` in the current context (modules load once per context)."""
    if name not in KERNELS:
        raise IcnsegError(f"unknown CUDA kernel {name!r}")
    drv = driver()
    ctx = drv.Context.get_current().handle
    if _loaded.get("ctx") != ctx:
        _loaded.clear()
        _loaded["ctx"] = ctx
    key = f"fn:{name}"
    if key not in _loaded:
        stem, fmt = KERNELS[name]
        if stem not in _loaded:
            _loaded[stem] = _load(drv, stem)
        with check_cuda(f"preparing {name}", unavailable=True):
            _loaded[key] = _loaded[stem].get_function(name).prepare(fmt)
    return _loaded[key]


def blocks(units: int, per_block: int) -> int:
    """Blocks for ``units`` work items at ``per_block`` items per block, in [1, MAX_GRID]."""
    return max(1, min(MAX_GRID, -(-units // per_block)))


def launch(name: str, grid: int, *args: Any, shared: int = 0, stream: Any = None) -> None:
    """Queue kernel ``name`` on ``stream`` (grid blocks of BLOCK threads) via the chokepoint.

    ``args`` are Python ints (pointers from ``ptr`` included) and floats, in the kernel's
    ``KERNELS`` format.
    """
    if name not in KERNELS:
        raise IcnsegError(f"unknown CUDA kernel {name!r}")
    fmt = KERNELS[name][1]
    if len(args) != len(fmt):
        raise IcnsegError(f"{name} takes {len(fmt)} arguments, got {len(args)}")
    for code, value in zip(fmt, args, strict=True):
        if code == "i" and not -(1 << 31) <= int(value) < (1 << 31):
            raise InputError(f"{name}: size {value} is too large for the CUDA kernels (int32)")
    fn = function(name)
    with check_cuda(f"running {name}"):
        fn.prepared_async_call((int(grid), 1, 1), (BLOCK, 1, 1), stream, *args,
                               shared_size=int(shared))


def ptr(arr: Any) -> int:
    """Device address of a GPUArray (0 for an empty one, which has no allocation)."""
    return 0 if arr.gpudata is None else int(arr.gpudata)


def empty(shape: tuple[int, ...], dtype: type) -> Any:
    """An uninitialised device array."""
    with check_cuda("allocating device memory"):
        return gpuarray().empty(tuple(int(s) for s in shape), np.dtype(dtype))


def upload(host: np.ndarray, stream: Any = None) -> Any:
    """Copy a host array to a new device array, queued on ``stream``."""
    with check_cuda("copying to the device"):
        return gpuarray().to_gpu_async(np.ascontiguousarray(host), stream=stream)


def keep(scratch: list | None, *arrays: Any) -> None:
    """Hold scratch arrays until the caller has synchronised (freeing them would sync)."""
    if scratch is not None:
        scratch.extend(arrays)


def check(arr: Any, name: str, ndim: int, dtypes: tuple[type, ...]) -> None:
    """Validate rank, dtype and contiguity of a device array argument (InputError)."""
    if not hasattr(arr, "gpudata"):
        raise InputError(f"{name} must be a pycuda GPUArray, got {type(arr).__name__}")
    if len(arr.shape) != ndim or arr.dtype not in [np.dtype(d) for d in dtypes]:
        raise InputError(f"{name} must be {ndim}-D {'/'.join(np.dtype(d).name for d in dtypes)}"
                         f", got shape {tuple(arr.shape)} {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise InputError(f"{name} must be C-contiguous")


def output(out: Any, name: str, shape: tuple[int, ...], dtype: type) -> Any:
    """``out`` checked to be a contiguous ``shape`` ``dtype`` device array, or a new one."""
    if out is None:
        return empty(shape, dtype)
    check(out, name, len(shape), (dtype,))
    if tuple(out.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    return out
