"""TensorRT, imported lazily: the one place that knows how to find it.

``import_tensorrt()`` returns ``tensorrt`` (>= 10) or, where that is what is installed,
``tensorrt_rtx``; ``current_env()`` names the TensorRT + GPU an engine is tied to (it asks
the device through ``icnseg.runtime.cuda``, the one CUDA context and error chokepoint, which
engine builds use too: they run on the GPU the engine is for).
"""

from __future__ import annotations

import importlib
from typing import Any

from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.errors import BackendUnavailable, ConfigError

INSTALL_TRT = ("TensorRT is not installed: pip install 'icnseg[tensorrt]' "
               "(or use JetPack's TensorRT on Jetson)")
MIN_TRT_MAJOR = 10


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


def current_env() -> TrtEnv:
    """The TensorRT flavour/version and GPU name/compute capability engines here are tied to."""
    from icnseg.runtime.cuda import check_cuda, cuda_driver

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


def check_flavour_gpu(env: TrtEnv) -> None:
    """ConfigError when this TensorRT flavour cannot build for the GPU (its support matrix,
    ``icnseg.artifacts.trt_support``)."""
    from icnseg.artifacts.trt_support import unsupported_gpu

    why = unsupported_gpu(env.flavour, env.version, env.compute_capability, env.gpu)
    if why is not None:
        raise ConfigError(why)
