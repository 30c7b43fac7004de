"""TensorRT and pycuda, imported lazily: the one place that knows how to find them.

``import_tensorrt()`` returns ``tensorrt`` (>= 10) or, where that is what is installed,
``tensorrt_rtx``; ``cuda_driver()`` initialises CUDA through pycuda and makes the device's
primary context current (the context TensorRT, ONNX Runtime and torch share);
``shared_stream()`` is the one CUDA stream every TensorRT engine of this process runs on,
so chained engines need no synchronisation between them. ``check_cuda`` is the chokepoint
that turns pycuda / TensorRT exceptions into ``IcnsegError``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from icnseg.errors import BackendUnavailable, IcnsegError
from icnseg.export.engine_cache import TrtEnv

INSTALL_TRT = ("TensorRT is not installed: pip install 'icnseg[tensorrt]' "
               "(or use JetPack's TensorRT on Jetson)")
INSTALL_PYCUDA = "pycuda is not installed: pip install 'icnseg[tensorrt]'"
MIN_TRT_MAJOR = 10
_state: dict[str, Any] = {}  # "ctx": the primary context we pushed, "stream": the shared stream


def import_tensorrt() -> tuple[Any, str]:
    """(module, "tensorrt" | "tensorrt_rtx"); BackendUnavailable naming the extra if neither."""
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            trt = importlib.import_module(name)
        except (ImportError, OSError):
            continue
        version = str(getattr(trt, "__version__", "0"))
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        if name == "tensorrt" and major < MIN_TRT_MAJOR:
            raise BackendUnavailable(
                f"TensorRT {version} is too old: icnseg needs TensorRT >= {MIN_TRT_MAJOR} "
                "(pip install 'icnseg[tensorrt]', or JetPack 6.1+ on Jetson)")
        return trt, name
    raise BackendUnavailable(INSTALL_TRT)


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
    """atexit: pop the primary context pushed by ``cuda_driver`` (pycuda warns otherwise)."""
    ctx = _state.pop("ctx", None)
    _state.pop("stream", None)
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
            raise BackendUnavailable("no CUDA device found (the tensorrt backend needs a GPU)")
        if drv.Context.get_current() is None:
            ctx = drv.Device(0).retain_primary_context()
            ctx.push()
            _state["ctx"] = ctx
            atexit.register(_pop_context)
    return drv


def shared_stream() -> Any:
    """The CUDA stream all TensorRT engines of this process enqueue on."""
    drv = cuda_driver()
    if "stream" not in _state:
        with check_cuda("creating a CUDA stream"):
            _state["stream"] = drv.Stream()
    return _state["stream"]


def current_env() -> TrtEnv:
    """The TensorRT flavour/version and GPU name/compute capability engines here are tied to."""
    trt, flavour = import_tensorrt()
    drv = cuda_driver()
    with check_cuda("querying the GPU", unavailable=True):
        dev = drv.Context.get_device()
        major, minor = dev.compute_capability()
        name = dev.name()
    return TrtEnv(flavour=flavour, version=str(trt.__version__), gpu=str(name),
                  compute_capability=f"{major}.{minor}")


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps the errors (for messages) and drops the chatter."""

    class _Logger(trt.ILogger):
        """Collects ERROR / INTERNAL_ERROR messages; ``last_error`` is the newest."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            """Record errors; warnings and info are dropped."""
            bad = (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR)
            if severity in bad:
                self.errors.append(str(msg).strip())

        @property
        def last_error(self) -> str:
            """The newest error line, or ''."""
            return self.errors[-1] if self.errors else ""

    return _Logger()
