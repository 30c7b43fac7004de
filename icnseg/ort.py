"""ONNX Runtime, imported lazily: distributions, DLL preloading, and providers that really run.

``get_available_providers()`` lists the CUDA and TensorRT providers of an onnxruntime-gpu
build even when cuDNN, cuBLAS, libnvinfer or the driver cannot be loaded; the session then
falls back to the next provider with only a log line. ``import_ort(gpu=True)`` preloads the
CUDA/cuDNN libraries of NVIDIA's wheels (``onnxruntime.preload_dlls``, ORT >= 1.21) and
``check_running`` compares what a session runs on with what was asked for, naming the
library that is missing. Used by the runtime backend, export's CPU checks and ``doctor``.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from icnseg.errors import BackendUnavailable

# Every PyPI distribution that installs the importable ``onnxruntime`` package.
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                 "onnxruntime-qnn", "onnxruntime-training", "ort-nightly", "ort-nightly-gpu")
# provider -> its shared library in onnxruntime/capi (Linux), whose dependencies name what is
# missing (libcudnn.so.9, libnvinfer.so.10, ...)
PROVIDER_LIBRARIES = {"CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
                      "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so"}
DRIVER_LIBRARY = "libcuda.so.1"
GPU_INSTALL = ("pip uninstall -y onnxruntime onnxruntime-gpu && "
               "pip install 'icnseg[gpu]'")
_preload: dict[str, list[str]] = {}  # "failed": libraries preload_dlls could not load


def installed_distributions() -> dict[str, str]:
    """{distribution: version} of every installed ONNX Runtime distribution."""
    return {name: v for name, (v, _) in _located().items()}


def _located() -> dict[str, tuple[str, str]]:
    """{distribution: (version, the folder its onnxruntime/ package is installed in)}."""
    found = {}
    for name in DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = (dist.version, str(Path(str(dist.locate_file(""))).resolve()))
    return found


def clash(found: dict[str, str] | None = None) -> str | None:
    """One line saying how to fix two ONNX Runtimes in one folder of sys.path, or None.

    Two distributions in one site-packages folder overwrite each other's files; in two
    folders (e.g. a --target install on PYTHONPATH) the first on sys.path is imported intact.
    ``found`` ({distribution: version}, all in one folder) is for callers that know better.
    """
    if found is None:
        folders: dict[str, dict[str, str]] = {}
        for name, (version, folder) in _located().items():
            folders.setdefault(folder, {})[name] = version
        found = next((f for f in folders.values() if len(f) > 1), {})
    if len(found) < 2:
        return None
    names = " and ".join(f"{n} {v}" for n, v in found.items())
    return (f"{names} are both installed and overwrite each other's onnxruntime/ folder (the "
            f"CUDA provider may be gone): {GPU_INSTALL} for the GPU, or keep only onnxruntime "
            f"for the CPU")


def import_ort(needed_for: str = "the onnxruntime backend", gpu: bool = False) -> Any:
    """``onnxruntime``; with ``gpu`` first refuse two distributions and preload CUDA/cuDNN."""
    if gpu and (why := clash()):
        raise BackendUnavailable(why)
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(f"{needed_for} needs ONNX Runtime: pip install 'icnseg[cpu]' "
                                 f"(or 'icnseg[gpu]' for CUDA)") from exc
    if gpu and "failed" not in _preload:
        _preload["failed"] = preload(onnxruntime)
    return onnxruntime


def preload(ort: Any) -> list[str]:
    """Run ``ort.preload_dlls()`` quietly, then load what it missed from NVIDIA's wheels on
    sys.path (e.g. torch's, when onnxruntime-gpu is installed elsewhere); the libraries still
    missing ([] if none, or no preload_dlls)."""
    if not hasattr(ort, "preload_dlls"):
        return []
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):  # it prints each failure on several lines
            ort.preload_dlls()
    except Exception:  # noqa: BLE001 - a failed preload only loses the better diagnosis
        return []
    failed = list(dict.fromkeys(re.findall(r"Failed to load (\S+?):", out.getvalue())))
    names = list(dict.fromkeys(Path(f).name for f in failed))  # ORT's order: cublasLt first
    return [n for n in names if not load_from_wheels(n)]


def load_from_wheels(name: str) -> bool:
    """Load library ``name`` from an ``nvidia/<package>/lib`` folder on sys.path; True if so."""
    for entry in sys.path:
        for path in sorted(Path(entry or ".").glob(f"nvidia/*/lib/{name}")):
            if _library_error(str(path)) is None:
                return True
    return False


def _library_error(path: str) -> str | None:
    """The loader's error for ``path`` (e.g. 'libcudnn.so.9: cannot open ...'), or None."""
    try:
        ctypes.CDLL(path, mode=getattr(os, "RTLD_GLOBAL", 0))
    except OSError as exc:
        return str(exc)
    return None


def provider_problem(ort: Any, provider: str) -> str:
    """Why ``provider`` did not start: the first missing library, or the driver, or a hint."""
    capi = Path(ort.__file__).resolve().parent / "capi"
    lib = PROVIDER_LIBRARIES.get(provider)
    if lib and (capi / lib).is_file():
        _library_error(str(capi / "libonnxruntime_providers_shared.so"))
        err = _library_error(str(capi / lib))
        if err:
            missing = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open", err)
            return (f"{missing.group(1)} cannot be loaded" if missing
                    else f"{lib} cannot be loaded ({err.splitlines()[0]})")
    elif lib:
        return f"this ONNX Runtime build has no {lib}"
    if _library_error(DRIVER_LIBRARY):
        return f"no NVIDIA driver ({DRIVER_LIBRARY} not found)"
    if failed := _preload.get("failed"):
        return f"{', '.join(failed)} cannot be loaded"
    return "no usable CUDA device, or a CUDA/cuDNN version this build was not made for"


def create_session(ort: Any, model: Any, opts: Any, providers: list[Any]) -> Any:
    """``InferenceSession`` without ORT's provider-fallback noise on stdout/stderr.

    A provider that cannot start makes ORT log errors and print an "EP Error" block; icnseg
    checks the provider that runs instead (``check_running``) and says it in one line, so
    ORT's default logger is kept at FATAL while the session is created (then ERROR).
    """
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return ort.InferenceSession(model, opts, providers=providers)
    finally:
        ort.set_default_logger_severity(3)


def check_running(session: Any, wanted: str, what: str) -> None:
    """BackendUnavailable (one line) unless ``session`` really runs on provider ``wanted``."""
    running = list(session.get_providers())
    if running and running[0] == wanted:
        return
    import onnxruntime

    problem = provider_problem(onnxruntime, wanted)
    raise BackendUnavailable(
        f"{what}: ONNX Runtime's {wanted} did not start ({problem}); the session would run "
        f"on {running[0] if running else 'nothing'} instead. {fix_for(problem)}")


def fix_for(problem: str) -> str:
    """What to do about a provider ``problem`` (from ``provider_problem``)."""
    if DRIVER_LIBRARY in problem:
        return "Install the NVIDIA driver (`icnseg doctor` shows what is seen)"
    if "libnvinfer" in problem:
        return ("Install TensorRT: pip install 'icnseg[tensorrt]' (or use --device cuda)")
    return f"Run `icnseg doctor`; for CUDA: {GPU_INSTALL}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: varint (wire type 0) for ints, length-delimited (2) for bytes."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tiny_model() -> bytes:
    """A serialised ONNX model y = Relu(x), x float32 [1, 8] (probes providers without onnx)."""
    def value(name: str) -> bytes:
        dims = _field(1, _field(1, 1)) + _field(1, _field(1, 8))
        tensor = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
        return _field(1, name.encode()) + _field(2, _field(1, tensor))

    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Relu")
    graph = _field(1, node) + _field(2, b"probe") + _field(11, value("x")) + _field(12, value("y"))
    opset = _field(1, b"") + _field(2, 13)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # IR version 8, opset 13


def probe_provider(ort: Any, provider: str) -> str | None:
    """None when a tiny session really runs on ``provider``, else why not (one line)."""
    import numpy as np

    if provider not in ort.get_available_providers():
        return f"not in this ONNX Runtime build ({', '.join(installed_distributions())})"
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider"
                              else [])
    try:
        session = create_session(ort, tiny_model(), opts, providers)
        running = session.get_providers()
        if running[0] != provider:
            return provider_problem(ort, provider)
        x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
        y = session.run(None, {"x": x})[0]
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not np.array_equal(y, np.maximum(x, 0)):
        return "wrong result from a Relu"
    return None
