"""pycuda launchers for the matcher kernels in ``cpp_ext/matcher.cu`` (device arrays in/out).

Importing this module imports nothing from pycuda; the first kernel call does. The kernels
come from ``cpp_ext/matcher.fatbin`` when it exists and is newer than the sources (built by
``cpp_ext/CMakeLists.txt``), else ``matcher.cu`` is compiled by pycuda (which caches it).
Inputs and outputs are C-contiguous ``pycuda.gpuarray.GPUArray``s in the current CUDA context
(one is created with ``pycuda.autoinit`` when there is none). Greedy NMS stays on the host
(``icnseg.nms``): it is sequential; only its IoU matrix comes from here.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, IcnsegError, InputError

__all__ = ["argmax_rows", "match_scores", "minmax_binarize", "pack_masks", "pairwise_iou"]

_SRC_DIR = Path(__file__).resolve().parent.parent / "cpp_ext"
_SOURCES = (_SRC_DIR / "matcher.cu", _SRC_DIR / "common.cuh")
_FATBIN = _SRC_DIR / "matcher.fatbin"
_BLOCK = 256  # threads per block for every kernel (8 warps)
_WARPS = _BLOCK // 32
_MAX_GRID = 1 << 16  # kernels are grid-stride, so capping the grid is always correct
_INSTALL = "pycuda is not installed: pip install 'icnseg[gpu]' for the CUDA matcher"
_loaded: dict[str, Any] = {}  # "ctx": handle of the context the module was loaded in, "module": it


@contextlib.contextmanager
def check_cuda(what: str, unavailable: bool = False) -> Iterator[None]:
    """The one chokepoint: pycuda/driver errors become BackendUnavailable or IcnsegError."""
    try:
        yield
    except IcnsegError:
        raise
    except ImportError as exc:
        raise BackendUnavailable(f"{_INSTALL} ({exc})") from exc
    except Exception as exc:
        if not type(exc).__module__.startswith("pycuda"):
            raise
        kind = BackendUnavailable if unavailable else IcnsegError
        raise kind(f"CUDA error while {what}: {type(exc).__name__}: {exc}".strip()) from exc


def _drv() -> Any:
    """Import pycuda.driver, initialise CUDA and make sure a context is current."""
    with check_cuda("initialising CUDA", unavailable=True):
        drv = importlib.import_module("pycuda.driver")
        drv.init()
        if drv.Device.count() == 0:
            raise BackendUnavailable("no CUDA device found")
        if drv.Context.get_current() is None:
            importlib.import_module("pycuda.autoinit")
        return drv


def _module() -> Any:
    """The loaded kernel module for the current context (fatbin if fresh, else compiled)."""
    drv = _drv()
    ctx = drv.Context.get_current().handle
    if _loaded.get("ctx") == ctx:
        return _loaded["module"]
    sources = [p.stat().st_mtime for p in _SOURCES if p.is_file()]
    fresh = _FATBIN.is_file() and all(_FATBIN.stat().st_mtime >= t for t in sources)
    if not fresh and not _SOURCES[0].is_file():
        raise BackendUnavailable(f"neither {_FATBIN} nor {_SOURCES[0]} is installed")
    with check_cuda("loading the matcher kernels", unavailable=True):
        if fresh:
            module = drv.module_from_file(str(_FATBIN))
        else:
            compiler = importlib.import_module("pycuda.compiler")
            module = compiler.SourceModule(_SOURCES[0].read_text(), no_extern_c=True,
                                           include_dirs=[str(_SRC_DIR)], options=["-O3"])
    _loaded.update(ctx=ctx, module=module)
    return module


def _gpuarray() -> Any:
    """pycuda.gpuarray, imported lazily."""
    with check_cuda("importing pycuda.gpuarray", unavailable=True):
        return importlib.import_module("pycuda.gpuarray")


def _check(arr: Any, name: str, ndim: int, dtypes: tuple[type, ...]) -> None:
    """Validate rank, dtype and contiguity of a device array argument."""
    if not hasattr(arr, "gpudata"):
        raise InputError(f"{name} must be a pycuda GPUArray, got {type(arr).__name__}")
    if len(arr.shape) != ndim or arr.dtype not in [np.dtype(d) for d in dtypes]:
        raise InputError(f"{name} must be {ndim}-D {'/'.join(np.dtype(d).name for d in dtypes)}"
                         f", got shape {arr.shape} {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise InputError(f"{name} must be C-contiguous")


def _grid(units: int, per_block: int) -> tuple[int, int, int]:
    """Blocks for ``units`` work items at ``per_block`` items per block, capped."""
    return (max(1, min(_MAX_GRID, -(-units // per_block))), 1, 1)


def _launch(name: str, units: int, per_block: int, *args: Any, shared: int = 0,
            stream: Any = None) -> None:
    """Launch kernel ``name`` with ``_BLOCK`` threads per block through the chokepoint."""
    fn = _module().get_function(name)
    with check_cuda(f"running {name}"):
        fn(*args, block=(_BLOCK, 1, 1), grid=_grid(units, per_block), shared=shared,
           stream=stream)


def pack_masks(masks: Any, stream: Any = None) -> Any:
    """Bit-pack bool/uint8 masks [N, H, W] on device into uint32 [N, ceil(H*W/32)]."""
    _check(masks, "masks", 3, (np.bool_, np.uint8))
    gpuarray = _gpuarray()
    n, hw = int(masks.shape[0]), int(masks.shape[1]) * int(masks.shape[2])
    w32 = -(-hw // 32)
    out = gpuarray.empty((n, w32), np.uint32)
    if n * w32:
        _launch("pack_masks_kernel", n * w32, _BLOCK, masks.gpudata, out.gpudata,
                np.int32(n), np.int32(hw), np.int32(w32), stream=stream)
    return out


def match_scores(v: Any, e: Any, b: Any, proposals: Any, areas: Any, alpha: float,
                 beta: float, gamma: float, stream: Any = None) -> Any:
    """Eq. 5 "icn" scores float32 [K, N] from packed V, E, B [K, W32], proposals [N, W32]
    and proposal areas int32 [N] (see ``icnseg.matching.match_scores``)."""
    for arr, name in ((v, "V"), (e, "E"), (b, "B"), (proposals, "proposals")):
        _check(arr, name, 2, (np.uint32,))
    _check(areas, "areas", 1, (np.int32,))
    k, w32, n = int(v.shape[0]), int(v.shape[1]), int(proposals.shape[0])
    if e.shape != v.shape or b.shape != v.shape or proposals.shape[1] != w32:
        raise InputError(f"packed shapes differ: V {v.shape}, E {e.shape}, B {b.shape}, "
                         f"proposals {proposals.shape}")
    if areas.shape[0] != n:
        raise InputError(f"{areas.shape[0]} areas for {n} proposals")
    out = _gpuarray().empty((k, n), np.float32)
    if k * n:
        _launch("match_scores_kernel", k * n, _WARPS, v.gpudata, e.gpudata, b.gpudata,
                proposals.gpudata, areas.gpudata, out.gpudata, np.int32(k), np.int32(n),
                np.int32(w32), np.float32(alpha), np.float32(beta), np.float32(gamma),
                stream=stream)
    return out


def argmax_rows(scores: Any, stream: Any = None) -> tuple[Any, Any]:
    """Per-row arg-max of float32 [K, N]: (index int32 [K], value float32 [K]); -1/-inf for
    rows without a finite maximum or when N == 0 (``icnseg.matching.best_proposals``)."""
    _check(scores, "scores", 2, (np.float32,))
    gpuarray = _gpuarray()
    k, n = int(scores.shape[0]), int(scores.shape[1])
    if n == 0:
        return (gpuarray.to_gpu(np.full(k, -1, np.int32)),
                gpuarray.to_gpu(np.full(k, -np.inf, np.float32)))
    index, value = gpuarray.empty(k, np.int32), gpuarray.empty(k, np.float32)
    if k:
        _launch("argmax_kernel", k, _WARPS, scores.gpudata, index.gpudata, value.gpudata,
                np.int32(k), np.int32(n), stream=stream)
    return index, value


def pairwise_iou(packed: Any, stream: Any = None) -> Any:
    """IoU of every pair of packed masks uint32 [M, W32] -> float32 [M, M] (empty pair: 0)."""
    _check(packed, "packed", 2, (np.uint32,))
    m, w32 = int(packed.shape[0]), int(packed.shape[1])
    out = _gpuarray().empty((m, m), np.float32)
    if m:
        _launch("pairwise_iou_kernel", m * m, _WARPS, packed.gpudata, out.gpudata,
                np.int32(m), np.int32(w32), stream=stream)
    return out


def minmax_binarize(maps: Any, threshold: float, stream: Any = None) -> Any:
    """Per-sample min-max normalise float32 maps [K, H, W] and return uint8 (x >= t)."""
    _check(maps, "maps", 3, (np.float32,))
    k, hw = int(maps.shape[0]), int(maps.shape[1]) * int(maps.shape[2])
    out = _gpuarray().empty(maps.shape, np.uint8)
    if k and hw:
        _launch("minmax_binarize_kernel", k, 1, maps.gpudata, out.gpudata, np.int32(k),
                np.int32(hw), np.float32(threshold), shared=2 * _BLOCK * 4, stream=stream)
    return out
