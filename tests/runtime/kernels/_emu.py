"""Run the cpp_ext CUDA kernels on the CPU: a test stand-in for pycuda (no GPU needed).

Each ``cpp_ext/<stem>.cu`` is compiled with g++ as C++ with ``emu/cuda_emu.h`` force-included
into a shared library, plus one generated ``emu_launch_<kernel>`` entry point per kernel of
``KERNELS``; a launch runs every CUDA thread of a block as a fiber (cuda_emu.h), blocks one
after another. ``install(monkeypatch)`` swaps
``icnseg.runtime.cuda_launch``'s ``function`` / ``gpuarray`` / ``driver`` for these, so the
real launchers (argument packing, grids, ``out=`` views) and ``gpu_matcher`` run unchanged.
Device memory is host memory filled with a 0xA5 pattern and fenced by guard bands that are
checked after every launch (out-of-bounds writes fail the test).
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
EMU_DIR = Path(__file__).resolve().parent / "emu"
GUARD = 64  # bytes of 0xA5 before and after every allocation
_SLOT = {"P": "emu_ptr", "i": "emu_int", "f": "emu_float", "d": "emu_double"}


def _wrapper(src: Path, kernels: dict[str, tuple[str, str]]) -> str:
    """C++ source: the .cu plus an emu_launch_<name>(slots, grid, block, shared) per kernel."""
    lines = [f'#include "{src}"', "inline EmuPtr emu_ptr(uint64_t bits) { return EmuPtr{bits}; }"]
    for name, (stem, fmt) in sorted(kernels.items()):
        if stem != src.stem:
            continue
        call = ", ".join(f"{_SLOT[c]}(a[{i}])" for i, c in enumerate(fmt))
        lines.append(f'extern "C" int emu_launch_{name}(const uint64_t* a, unsigned int grid, '
                     f"unsigned int block, unsigned int shared) {{\n"
                     f"    return emu_run(grid, block, shared, [a] {{ {name}({call}); }});\n}}")
    return "\n".join(lines) + "\n"


def build(out_dir: Path) -> dict[str, ctypes.CDLL]:
    """Compile every cpp_ext/*.cu for the emulator; {stem: library}."""
    from icnseg.runtime.cuda_launch import KERNELS

    gxx = shutil.which("g++")
    if gxx is None:
        raise FileNotFoundError("g++ not found")
    libs = {}
    for src in sorted((ROOT / "cpp_ext").glob("*.cu")):
        wrapper = out_dir / f"{src.stem}_emu.cpp"
        wrapper.write_text(_wrapper(src, KERNELS))
        lib = out_dir / f"{src.stem}.so"
        cmd = [gxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-ffp-contract=off",
               "-fno-strict-aliasing", "-U_FORTIFY_SOURCE", "-Wall", "-Wextra", "-Werror",
               "-Wno-unused-parameter", "-I", str(EMU_DIR), "-I", str(ROOT / "cpp_ext"),
               "-include", "cuda_emu.h", str(wrapper), "-o", str(lib)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        libs[src.stem] = ctypes.CDLL(str(lib))
    return libs


def _slot(code: str, value: Any) -> int:
    """One kernel argument as the 64-bit slot emu_launch_* reads."""
    if code == "f":
        return struct.unpack("<I", struct.pack("<f", value))[0]
    if code == "d":
        return struct.unpack("<Q", struct.pack("<d", value))[0]
    return int(value) & 0xFFFFFFFFFFFFFFFF


class EmuArray:
    """The slice of pycuda.gpuarray.GPUArray the launchers use, over guarded host memory."""

    live: weakref.WeakSet = weakref.WeakSet()
    blocking_reads = 0  # get() without async_: would wait for the device on a GPU

    def __init__(self, shape: Any, dtype: Any, _view: np.ndarray | None = None,
                 _raw: np.ndarray | None = None, gpudata: int | None = None) -> None:
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        if gpudata is not None:  # GPUArray(shape, dtype, gpudata=ptr): a view of memory we own
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            buf = (ctypes.c_uint8 * nbytes).from_address(int(gpudata))
            _view = np.frombuffer(buf, np.uint8).view(dtype).reshape(shape)
        if _view is None:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            _raw = np.full(nbytes + 2 * GUARD, 0xA5, np.uint8)
            _view = _raw[GUARD:GUARD + nbytes].view(dtype).reshape(shape)
            EmuArray.live.add(self)
        self._raw, self.host = _raw, _view
        self.shape, self.dtype = tuple(_view.shape), dtype
        self.size, self.nbytes, self.strides = _view.size, _view.nbytes, _view.strides
        self.flags = _view.flags
        self.gpudata = _view.ctypes.data if _view.size else None

    def __getitem__(self, index: Any) -> EmuArray:
        if self.gpudata is None:
            raise TypeError("int() argument must be ... not 'NoneType' (pycuda on empty array)")
        return EmuArray(self.host.shape, self.dtype, _view=self.host[index], _raw=self._raw)

    def get(self, ary: np.ndarray | None = None, pagelocked: bool = False,
            async_: bool = False, stream: Any = None) -> np.ndarray:
        EmuArray.blocking_reads += 0 if async_ else 1
        if ary is None:
            return self.host.copy()
        ary[...] = self.host
        return ary

    def get_async(self, stream: Any = None, ary: np.ndarray | None = None) -> np.ndarray:
        return self.get(ary=ary, async_=True, stream=stream)

    def guards_ok(self) -> bool:
        """True while the guard bands are untouched (views of foreign memory have none)."""
        raw = self._raw
        return raw is None or bool((raw[:GUARD] == 0xA5).all() and (raw[-GUARD:] == 0xA5).all())


def _to_gpu(ary: np.ndarray, stream: Any = None) -> EmuArray:
    out = EmuArray(ary.shape, ary.dtype)
    out.host[...] = ary
    return out


class _Stream:
    """pycuda.driver.Stream stand-in: everything already ran synchronously."""

    synchronizations = 0

    def synchronize(self) -> None:
        _Stream.synchronizations += 1


class _Kernel:
    """A prepared kernel: packs arguments like pycuda, then runs the grid in the emulator."""

    def __init__(self, lib: ctypes.CDLL, name: str, fmt: str) -> None:
        self.name, self.fmt = name, fmt
        self.fn = getattr(lib, f"emu_launch_{name}")
        self.fn.argtypes = [ctypes.POINTER(ctypes.c_uint64)] + [ctypes.c_uint] * 3
        self.fn.restype = ctypes.c_int

    def prepared_async_call(self, grid: tuple, block: tuple, stream: Any, *args: Any,
                            shared_size: int = 0) -> None:
        struct.pack("@" + self.fmt, *args)  # pycuda packs with the same struct codes
        if tuple(grid[1:]) != (1, 1) or tuple(block[1:]) != (1, 1):
            raise ValueError(f"{self.name}: emulator needs 1-D launches, got {grid} {block}")
        values = [_slot(c, v) for c, v in zip(self.fmt, args, strict=True)]
        slots = (ctypes.c_uint64 * max(len(values), 1))(*values)
        rc = self.fn(slots, int(grid[0]), int(block[0]), int(shared_size))
        if rc:
            why = "a barrier never released" if rc == 1 else "unsupported block size"
            raise RuntimeError(f"{self.name}: {why}")
        bad = [a.shape for a in list(EmuArray.live) if not a.guards_ok()]
        if bad:
            raise RuntimeError(f"{self.name} wrote out of bounds of arrays {bad}")


class Emulator:
    """The emulated device: kernels by name, and pycuda stand-ins to monkeypatch in."""

    def __init__(self, libs: dict[str, ctypes.CDLL]) -> None:
        from icnseg.runtime.cuda_launch import KERNELS

        self.kernels = {name: _Kernel(libs[stem], name, fmt)
                        for name, (stem, fmt) in KERNELS.items()}
        self.gpuarray = SimpleNamespace(GPUArray=EmuArray, empty=EmuArray, to_gpu=_to_gpu,
                                        to_gpu_async=_to_gpu)
        self.driver = SimpleNamespace(Stream=_Stream, pagelocked_empty=np.empty,
                                      Context=SimpleNamespace(synchronize=_Stream().synchronize))

    @staticmethod
    def waits() -> int:
        """Host waits so far: stream synchronisations plus blocking reads."""
        return _Stream.synchronizations + EmuArray.blocking_reads

    def install(self, monkeypatch: Any) -> None:
        """Point icnseg.runtime.cuda_launch at the emulator for one test."""
        from icnseg.runtime import cuda_launch

        monkeypatch.setattr(cuda_launch, "function", self.kernels.__getitem__)
        monkeypatch.setattr(cuda_launch, "gpuarray", lambda: self.gpuarray)
        monkeypatch.setattr(cuda_launch, "driver", lambda: self.driver)
