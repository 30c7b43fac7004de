"""CUDA through pycuda, imported lazily: the one context, stream and error chokepoint.

``cuda_driver()`` initialises CUDA and makes device 0's primary context current in the calling
thread (the context TensorRT, ONNX Runtime, torch and our kernels share; pycuda's context stack
is per thread, so each thread pushes it once); ``shared_stream()`` is the one stream the
TensorRT engines and matcher kernels of the calling thread enqueue on, so chained stages need no
synchronisation between them and threads do not wait for each other; ``check_cuda`` turns
pycuda / TensorRT / driver exceptions into ``IcnsegError`` (``BackendUnavailable`` while
initialising).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import threading
from collections.abc import Iterator
from typing import Any

from icnseg.errors import BackendUnavailable, IcnsegError

INSTALL_PYCUDA = ("pycuda is not installed: pip install 'icnseg[kernels]' (CUDA kernels; builds "
                  "against the CUDA toolkit, CUDA_ROOT=/usr/local/cuda) or 'icnseg[tensorrt]'")
_main: dict[str, Any] = {}  # "ctx": the primary context pushed in the main thread
_local = threading.local()  # per thread: .pushed (context pushed here), .stream


@contextlib.contextmanager
def check_cuda(what: str, unavailable: bool = False) -> Iterator[None]:
    """The one chokepoint: pycuda / TensorRT / driver errors become IcnsegError."""
    try:
        yield
    except IcnsegError:
        raise
    except ImportError as exc:
        raise BackendUnavailable(f"{INSTALL_PYCUDA} ({exc})") from exc
    except Exception as exc:
        module = type(exc).__module__ or ""
        if not (module.startswith(("pycuda", "tensorrt")) or isinstance(exc, RuntimeError)):
            raise
        kind = BackendUnavailable if unavailable else IcnsegError
        msg = f"CUDA/TensorRT error while {what}: {type(exc).__name__}: {exc}".strip()
        raise kind(msg) from exc


def _pop_context() -> None:
    """atexit: pop the primary context the main thread pushed (pycuda warns otherwise)."""
    ctx = _main.pop("ctx", None)
    if threading.current_thread() is threading.main_thread():
        _local.__dict__.pop("stream", None)
    if ctx is not None:
        with contextlib.suppress(Exception):
            ctx.pop()


def cuda_driver() -> Any:
    """pycuda.driver with CUDA initialised and a context current (device 0's primary one)."""
    try:
        drv = importlib.import_module("pycuda.driver")
    except ImportError as exc:
        raise BackendUnavailable(INSTALL_PYCUDA) from exc
    with check_cuda("initialising CUDA", unavailable=True):
        drv.init()
        if drv.Device.count() == 0:
            raise BackendUnavailable("no CUDA device found")
        if drv.Context.get_current() is None:
            ctx = drv.Device(0).retain_primary_context()
            ctx.push()
            _local.pushed = ctx
            if threading.current_thread() is threading.main_thread() and "ctx" not in _main:
                _main["ctx"] = ctx
                atexit.register(_pop_context)
    return drv


def shared_stream() -> Any:
    """The CUDA stream the TensorRT engines and kernels of the calling thread enqueue on."""
    drv = cuda_driver()
    if getattr(_local, "stream", None) is None:
        with check_cuda("creating a CUDA stream"):
            _local.stream = drv.Stream()
    return _local.stream
