"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers, chosen by device.

``run`` takes and returns host arrays. ``run_device`` uses IOBinding: inputs may be host
arrays or ``DeviceArray`` views of earlier outputs, outputs are allocated by ORT on the
device (CUDA for cuda/tensorrt, CPU for cpu) and returned as ``DeviceArray``s that own their
OrtValue, so graphs chain on the GPU. The TensorRT EP gets its engine and timing caches under
``<export dir>/cache/ort-trt`` (or the user cache folder when the export directory is
read-only) and explicit profiles for dynamic K from the manifest, so a new peak count never
triggers an engine rebuild. On a GPU device the session must really run on the provider asked
for (``icnseg.ort.check_running``): a silent fallback to the CPU is a BackendUnavailable naming
the library that is missing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, ConfigError, InputError
from icnseg.ort import GPU_INSTALL, check_running, clash, create_session, import_ort
from icnseg.runtime.backend import Backend, DeviceArray

# device -> execution providers in priority order (CPU last as ORT's own fallback).
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_IO_DEVICE = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}  # where IOBinding puts outputs
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
           "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device``; BackendUnavailable if this ORT build lacks them."""
    ort = import_ort(gpu=device != "cpu")
    wanted = PROVIDERS[device]
    have = set(ort.get_available_providers())
    if wanted[0] not in have:
        fix = clash() or (GPU_INSTALL if device != "cpu" else "pip install 'icnseg[cpu]'")
        raise BackendUnavailable(
            f"device {device!r} needs ONNX Runtime's {wanted[0]}, which this installation "
            f"lacks (available: {', '.join(sorted(have))}): {fix}"
        )
    return [p for p in wanted if p in have]


def trt_cache_dir(export_dir: Path) -> Path:
    """``<export_dir>/cache/ort-trt`` if writable, else a per-export folder in the user cache."""
    local = export_dir / "cache" / "ort-trt"
    try:
        local.mkdir(parents=True, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(str(export_dir.resolve()).encode()).hexdigest()[:12]
    out = root / "icnseg" / "ort-trt" / tag
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shape_list(profiles: Mapping[str, tuple], which: int) -> str:
    """ORT's profile syntax: 'name:d0xd1x...,name2:...'."""
    return ",".join(f"{n}:{'x'.join(str(d) for d in p[which])}" for n, p in profiles.items())


def trt_provider_options(onnx_path: Path, precision: str | None = None) -> dict[str, Any]:
    """TensorRT EP options: engine + timing caches, FP16, explicit profiles for dynamic K."""
    from icnseg.artifacts.manifest import MANIFEST, read_manifest
    from icnseg.artifacts.profiles import graph_input_shapes, profile_shapes

    cache = str(trt_cache_dir(onnx_path.parent))
    opts: dict[str, Any] = {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True, "trt_timing_cache_path": cache,
        "trt_fp16_enable": precision == "fp16",
    }
    role = onnx_path.stem
    if (onnx_path.parent / MANIFEST).is_file() and role in ("prm", "icn"):
        m = read_manifest(onnx_path.parent)
        profiles = profile_shapes(graph_input_shapes(m, role), int(m["k_max"]), m["input_size"])
        if profiles:
            for i, key in enumerate(("min", "opt", "max")):
                opts[f"trt_profile_{key}_shapes"] = _shape_list(profiles, i)
    return opts


class OnnxRuntimeBackend(Backend):
    """One ONNX model in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, session, device: str, path: Path) -> None:
        """Wrap an existing session (use ``load``)."""
        self.session, self.device, self.path = session, device, path
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.io_device = _IO_DEVICE[device]

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu",
             precision: str | None = None, threads: int | None = None) -> OnnxRuntimeBackend:
        """Create a session for ``path`` on ``device`` (cpu | cuda | tensorrt).

        ``precision="fp16"`` applies to the TensorRT EP (device tensorrt) only. ``threads``
        fixes the session's intra-op threads (None: ONNX Runtime's default, one per core).
        """
        if precision not in (None, "fp32", "fp16"):
            raise ConfigError(f"precision {precision!r}: the onnxruntime backend runs fp32, "
                              "or fp16 with --device tensorrt (INT8: use the tensorrt backend)")
        if precision == "fp16" and device != "tensorrt":
            raise ConfigError("precision fp16 with onnxruntime needs --device tensorrt")
        providers: list[Any] = list(providers_for(device))
        ort = import_ort()
        if providers[0] == "TensorrtExecutionProvider":
            providers[0] = (providers[0], trt_provider_options(Path(path), precision))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"threads must be >= 1, got {threads}")
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        try:
            session = create_session(ort, str(path), opts, providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InputError(f"{path}: ONNX Runtime cannot load it ({_first_line(exc)})"
                             ) from exc
        if device != "cpu":
            check_running(session, PROVIDERS[device][0], str(path))
        return cls(session, device, Path(path))

    def _run(self, feeds: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """Run once on host arrays."""
        try:
            values = self.session.run(names, {k: np.ascontiguousarray(v)
                                              for k, v in feeds.items()})
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InputError(f"{self.path}: ONNX Runtime run failed ({_first_line(exc)})"
                             ) from exc
        return dict(zip(names, values, strict=True))

    def _run_device(self, feeds: Mapping[str, np.ndarray | DeviceArray], names: list[str]
                    ) -> dict[str, DeviceArray]:
        """Run once with IOBinding; outputs stay on this backend's device as DeviceArrays."""
        binding = self.session.io_binding()
        keep = []  # host inputs must outlive the run
        for name, value in feeds.items():
            if isinstance(value, DeviceArray):
                if value.device != self.io_device:
                    raise InputError(f"{self.path}: input {name} is on {value.device}, this "
                                     f"session binds {self.io_device}")
                binding.bind_input(name, value.device, 0, np.dtype(value.dtype).type,
                                   list(value.shape), value.ptr)
            else:
                keep.append(np.ascontiguousarray(value))
                binding.bind_cpu_input(name, keep[-1])
        for name in names:
            binding.bind_output(name, self.io_device, 0)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InputError(f"{self.path}: ONNX Runtime run failed ({_first_line(exc)})"
                             ) from exc
        values = binding.get_outputs()
        return {name: DeviceArray(int(v.data_ptr()), tuple(int(d) for d in v.shape()),
                                  np.dtype(_DTYPES[v.data_type()]), self.io_device, owner=v)
                for name, v in zip(names, values, strict=True)}

    def _to_host(self, array: DeviceArray) -> np.ndarray:
        """Copy a ``run_device`` output (or a view of one) to a new host array."""
        if not hasattr(array.owner, "numpy"):
            raise InputError(f"{self.path}: to_host needs an array returned by run_device")
        flat = np.asarray(array.owner.numpy()).reshape(-1)
        return np.array(flat[: array.size].reshape(array.shape), dtype=array.dtype, copy=True)

    def _close(self) -> None:
        """Drop the session."""
        self.session = None


def _first_line(exc: BaseException) -> str:
    """The first line of an ONNX Runtime error (its type name when empty)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
