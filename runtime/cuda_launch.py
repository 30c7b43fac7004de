"""Launch infrastructure for the CUDA kernels in ``cpp_ext/`` (pycuda, imported lazily).

Importing this module imports nothing from pycuda; the first kernel call does. Each
``cpp_ext/<stem>.cu`` is one CUDA module, loaded in this order: the prebuilt
``cpp_ext/<stem>.fatbin`` (``tools/build_fatbins.py``: SASS for ``FATBIN_ARCHS`` plus PTX)
when ``cpp_ext/fatbins.json`` says it was built from the very sources installed; else the .cu
compiled by pycuda when ``nvcc`` is on PATH; else ``BackendUnavailable`` (callers fall back to
the numpy matcher). Each fallback is announced once, in one line. ``KERNELS`` names every
kernel with its module and argument format (``P`` pointer, ``i`` int32, ``f`` float32, ``d``
float64); kernels are launched through pycuda's prepared calls with that format,
asynchronously on the given stream. Device arrays are C-contiguous ``pycuda.gpuarray.GPUArray``s
in the current CUDA context (the device's primary context is made current when there is none).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, IcnsegError, InputError
from icnseg.notice import notice
from icnseg.runtime.cuda import check_cuda, cuda_driver

SRC_DIR = Path(__file__).resolve().parent.parent / "cpp_ext"
COMMON = SRC_DIR / "common.cuh"
FATBIN_INDEX = "fatbins.json"  # in SRC_DIR: nvcc version, archs, sha256 of sources + fatbin
FATBIN_ARCHS = (75, 80, 86, 87, 89, 90)  # SASS in every fatbin (Turing .. Hopper, Orin = 87)
PTX_ARCH = FATBIN_ARCHS[-1]  # PTX for newer GPUs, JIT-compiled by the driver
BLOCK = 256  # threads per block for every kernel (8 warps)
WARPS = BLOCK // 32
MAX_GRID = 1 << 16  # kernels are grid-stride, so capping the grid is always correct

# kernel name -> (module stem in cpp_ext/, argument format); checked against the .cu sources.
KERNELS: dict[str, tuple[str, str]] = {
    "pack_masks_kernel": ("matcher", "PPiii"),
    "match_scores_kernel": ("matcher", "PPPPPPiiiddd"),
    "jaccard_scores_kernel": ("matcher", "PPPiii"),
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
    "jaccard_sums_kernel": ("superpixel", "PPPPii"),
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


def sources_sha256(stem: str) -> str:
    """sha256 over the names and bytes of the files module ``stem`` is built from."""
    digest = hashlib.sha256()
    for path in sources(stem):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def fatbin_index() -> dict[str, Any]:
    """``cpp_ext/fatbins.json`` ({} when absent or unreadable: then no fatbin is trusted)."""
    try:
        index = json.loads((SRC_DIR / FATBIN_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def fatbin_problem(stem: str, index: dict[str, Any] | None = None) -> str | None:
    """Why ``cpp_ext/<stem>.fatbin`` cannot be used (None when it matches its sources)."""
    fatbin = SRC_DIR / f"{stem}.fatbin"
    entry = (fatbin_index() if index is None else index).get("modules", {}).get(stem)
    if not fatbin.is_file():
        return f"{fatbin.name} is not installed"
    if not isinstance(entry, dict):
        return f"{fatbin.name} is not listed in {FATBIN_INDEX}"
    if not all(p.is_file() for p in sources(stem)):
        return None  # a wheel without sources: nothing to be stale against
    if entry.get("sources_sha256") != sources_sha256(stem):
        return f"{fatbin.name} is stale (built from other sources than {stem}.cu/common.cuh)"
    if entry.get("fatbin_sha256") != hashlib.sha256(fatbin.read_bytes()).hexdigest():
        return f"{fatbin.name} does not match its recorded sha256"
    return None


def nvcc() -> str | None:
    """Path of the nvcc pycuda would run (it runs ``nvcc`` from PATH), or None."""
    return shutil.which("nvcc")


def _compile(stem: str, why: str) -> Any:
    """Compile ``<stem>.cu`` with pycuda/nvcc; BackendUnavailable (one line) if impossible."""
    src = sources(stem)[0]
    if not src.is_file():
        raise BackendUnavailable(f"CUDA kernels {stem}: {why}, and {src} is not installed")
    if nvcc() is None:
        raise BackendUnavailable(f"CUDA kernels {stem}: {why}, and nvcc is not on PATH to "
                                 f"compile {src.name}")
    notice(f"CUDA kernels {stem}: {why}; compiling {src.name} with nvcc")
    try:
        compiler = importlib.import_module("pycuda.compiler")
        return compiler.SourceModule(src.read_text(), no_extern_c=True,
                                     include_dirs=[str(SRC_DIR)], options=["-O3"])
    except Exception as exc:  # noqa: BLE001 - CompileError, ExecError (OSError), LogicError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailable(f"CUDA kernels {stem}: nvcc cannot build {src.name} here "
                                 f"({type(exc).__name__}: {first})") from exc


def _load(drv: Any, stem: str) -> Any:
    """Load module ``stem``: its fatbin when it matches the sources, else compile the .cu."""
    index = fatbin_index()
    problem = fatbin_problem(stem, index)
    if problem is None:
        fatbin = SRC_DIR / f"{stem}.fatbin"
        try:
            return drv.module_from_file(str(fatbin))
        except Exception as exc:  # noqa: BLE001 - pycuda LogicError/RuntimeError: arch, driver
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            problem = (f"{fatbin.name} (CUDA {index.get('cuda', '?')}, sm_"
                       f"{'/'.join(str(a) for a in index.get('archs', []))}) does not load "
                       f"under this driver/GPU ({first})")
    return _compile(stem, problem)


def load_plan() -> dict[str, str]:
    """Per module, how it would load here without touching a GPU: fatbin | nvcc | none."""
    index = fatbin_index()
    plan = {}
    for stem in MODULES:
        if fatbin_problem(stem, index) is None:
            plan[stem] = "fatbin"
        else:
            plan[stem] = "nvcc" if nvcc() and sources(stem)[0].is_file() else "none"
    return plan


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
