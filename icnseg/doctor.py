"""``icnseg doctor``: what this machine can run, probed for real, and what is missing.

Versions (Python, icnseg, numpy, onnx, every ONNX Runtime distribution, torch and its CUDA),
each GPU from the CUDA driver itself (name, compute capability, memory, driver and CUDA
versions, no pycuda needed), the ONNX Runtime providers that actually start (a tiny session
each), TensorRT's flavour, version and GPU support, pycuda and the kernel path that would
load, the Jetson board; then ``matrix``: backend x device x precision, each ok or the one
thing missing. ``collect()`` returns it all as JSON-ready data (``icnseg doctor --json``).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from icnseg import __version__
from icnseg import jetson as jetson_info
from icnseg import ort as iort
from icnseg.errors import IcnsegError

ORT_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 75, 76


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def driver_gpus() -> dict[str, Any]:
    """GPUs as the CUDA driver (libcuda) reports them; ``error`` says why there are none."""
    try:
        cuda = ctypes.CDLL(iort.DRIVER_LIBRARY)
    except OSError:
        return {"gpus": [], "error": f"no NVIDIA driver ({iort.DRIVER_LIBRARY} not found)"}
    if rc := cuda.cuInit(0):
        return {"gpus": [], "error": f"cuInit failed with CUDA error {rc} (no usable GPU?)"}
    version, count = ctypes.c_int(), ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    cuda.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for i in range(count.value):
        dev, name = ctypes.c_int(), ctypes.create_string_buffer(256)
        major, minor, mem = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        cuda.cuDeviceGetName(name, 256, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(major),
                                  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor),
                                  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        cuda.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append({"index": i, "name": name.value.decode(errors="replace"),
                     "compute_capability": f"{major.value}.{minor.value}",
                     "memory_mib": mem.value // (1 << 20)})
    v = version.value
    return {"gpus": gpus, "cuda_driver_api": f"{v // 1000}.{v % 1000 // 10}",
            "driver": _driver_release(), "error": None if gpus else "no CUDA device found"}


def _driver_release() -> str | None:
    """The kernel driver release (e.g. 550.54.15) from /proc or nvidia-smi."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        for word in text.split():
            if word.count(".") >= 1 and word.replace(".", "").isdigit():
                return word
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=20).stdout.split()
            return out[0] if out else None
        except (OSError, subprocess.SubprocessError):
            return None
    return None


def onnxruntime_info() -> dict[str, Any]:
    """Distributions, listed providers and the providers a tiny session really runs on."""
    found = iort.installed_distributions()
    info: dict[str, Any] = {"distributions": found, "clash": iort.clash()}
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:
        return {**info, "error": f"not importable ({_first_line(exc)})", "providers": {}}
    info["imported"] = str(Path(ort.__file__).resolve().parent)
    build = importlib.util.find_spec("onnxruntime.capi.build_and_package_info")
    info["cuda_build"] = (getattr(importlib.import_module(build.name), "cuda_version", None)
                          if build else None) or None
    info["listed"] = list(ort.get_available_providers())
    if info["cuda_build"]:
        info["preload_failed"] = iort.preload(ort)
    info["providers"] = {}
    for provider in ORT_PROVIDERS:
        problem = iort.probe_provider(ort, provider)
        info["providers"][provider] = "ok" if problem is None else problem
    return info


def torch_info() -> dict[str, Any]:
    """torch's version, the CUDA it was built for and whether it sees a GPU."""
    if importlib.util.find_spec("torch") is None:
        return {"version": None}
    try:
        torch = importlib.import_module("torch")
        return {"version": torch.__version__, "cuda_build": torch.version.cuda,
                "cuda_available": bool(torch.cuda.is_available()),
                "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    except Exception as exc:  # noqa: BLE001 - a broken torch is a finding, not a crash
        return {"version": _version("torch"), "error": _first_line(exc)}


def tensorrt_info(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """TensorRT flavour and version, and per GPU whether its support matrix lists it."""
    from icnseg.artifacts.trt_env import import_tensorrt
    from icnseg.artifacts.trt_support import unsupported_gpu

    try:
        trt, flavour = import_tensorrt()
    except IcnsegError as exc:
        return {"flavour": None, "error": str(exc)}
    version = str(getattr(trt, "__version__", "?"))
    support = {g["name"]: unsupported_gpu(flavour, version, g["compute_capability"], g["name"])
               or "ok" for g in gpus}
    return {"flavour": flavour, "version": version, "gpus": support}


def pycuda_info(have_gpu: bool) -> dict[str, Any]:
    """pycuda's version and, per kernel module, how it would load (really loaded on a GPU)."""
    from icnseg.runtime import cuda_launch as cl

    info: dict[str, Any] = {"version": _version("pycuda"), "nvcc": cl.nvcc(),
                            "fatbins": {k: cl.fatbin_index().get(k) for k in ("cuda", "archs")},
                            "plan": cl.load_plan()}
    if info["version"] is None:
        info["kernels"] = "numpy matcher (pycuda not installed: pip install 'icnseg[kernels]')"
    elif not have_gpu:
        info["kernels"] = "numpy matcher (no GPU)"
    else:
        try:
            for stem in cl.MODULES:
                cl.function(next(n for n, (s, _) in cl.KERNELS.items() if s == stem))
            info["kernels"] = "CUDA kernels (" + ", ".join(
                f"{s}: {p}" for s, p in info["plan"].items()) + ")"
        except Exception as exc:  # noqa: BLE001 - reported, never raised
            info["kernels"] = f"numpy matcher ({_first_line(exc)})"
    return info


def matrix(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Backend x device x precision rows: ``ok`` True, or ``missing`` (the one thing)."""
    ort, trt, gpu = report["onnxruntime"], report["tensorrt"], report["driver"]
    providers = ort.get("providers", {})
    no_gpu = gpu["error"]
    rows = []

    def row(backend: str, device: str, precision: str, missing: str | None) -> None:
        rows.append({"backend": backend, "device": device, "precision": precision,
                     "ok": missing is None, "missing": missing})

    torch_missing = None if report["torch"].get("version") and not report["torch"].get(
        "error") else "PyTorch: pip install torch (README: the exact CPU build)"
    row("torch", "cpu", "fp32", torch_missing)
    cpu = providers.get("CPUExecutionProvider")
    row("onnxruntime", "cpu", "fp32", ort.get("error") or (None if cpu == "ok" else cpu))
    for device, provider, precisions in (("cuda", "CUDAExecutionProvider", ("fp32",)),
                                         ("tensorrt", "TensorrtExecutionProvider",
                                          ("fp32", "fp16"))):
        state = providers.get(provider, ort.get("error", "ONNX Runtime not installed"))
        missing = None if state == "ok" else (no_gpu or ort["clash"] or f"{provider}: {state}")
        if missing and not no_gpu and "not in this ONNX Runtime build" in str(state):
            missing += f"; {iort.GPU_INSTALL}"
        for precision in precisions:
            row("onnxruntime", device, precision, missing)
    for precision in ("fp32", "fp16", "int8"):
        missing = no_gpu or trt.get("error")
        if not missing and trt["flavour"] == "tensorrt_rtx" and precision != "fp32":
            missing = f"TensorRT-RTX builds fp32 engines here; {precision} needs tensorrt"
        if not missing:
            bad = [why for why in trt["gpus"].values() if why != "ok"]
            missing = bad[0] if bad else None
        if not missing and report["pycuda"]["version"] is None:
            missing = "pycuda (device buffers of the backend): pip install 'icnseg[tensorrt]'"
        row("tensorrt", "cuda", precision, missing)
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """One sentence: what runs here."""
    ok = [r for r in rows if r["ok"]]
    if not ok:
        return "nothing can run here: install 'icnseg[cpu]' at least"
    if all(r["device"] == "cpu" for r in ok):
        return ("only CPU backends are available here: "
                + ", ".join(sorted({r["backend"] for r in ok})) + " on the CPU")
    return "available here: " + ", ".join(
        f"{r['backend']}/{r['device']}/{r['precision']}" for r in ok)


def collect() -> dict[str, Any]:
    """Everything ``icnseg doctor`` reports, as JSON-ready data."""
    driver = driver_gpus()
    have_gpu = bool(driver["gpus"])
    board = jetson_info.jetson_model()
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
        "icnseg": {"version": __version__, "path": str(Path(__file__).resolve().parent)},
        "packages": {name: _version(name) for name in ("numpy", "onnx", "opencv-python-headless")},
        "onnxruntime": onnxruntime_info(),
        "torch": torch_info(),
        "driver": driver,
        "tensorrt": tensorrt_info(driver["gpus"]),
        "pycuda": pycuda_info(have_gpu),
        "jetson": None if board is None else {"model": board,
                                              "power_mode": jetson_info.power_mode(),
                                              "clocks_mhz": jetson_info.clocks()},
    }
    report["matrix"] = matrix(report)
    report["summary"] = summary(report["matrix"])
    return report
