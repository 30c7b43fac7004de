"""``icnseg.load(MODEL, backend=None, device=None)``: the one factory of Segmenters.

MODEL is ``default`` (the embedded checkpoint, or its shipped export when PyTorch is absent),
a checkpoint file (-> the ``torch`` backend) or an export directory (-> ``onnxruntime``, or
``tensorrt`` when engines for this machine were built into it). Backend names, devices and
which device each backend runs on are defined here and nowhere else.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from icnseg.errors import ConfigError, InputError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default.safetensors"
DEFAULT_EXPORT = ASSETS / "export"

TORCH, ONNXRUNTIME, TENSORRT = "torch", "onnxruntime", "tensorrt"
BACKENDS = (TORCH, ONNXRUNTIME, TENSORRT)
RUNTIME_BACKENDS = (ONNXRUNTIME, TENSORRT)  # run export directories, never import torch
# cpu | cuda | tensorrt (for onnxruntime: its TensorRT execution provider)
DEVICES = ("cpu", "cuda", "tensorrt")
GPU_DEVICES = ("cuda", "tensorrt")
# the devices each backend can run on; the first is its default
BACKEND_DEVICES = {TORCH: ("cpu",), ONNXRUNTIME: DEVICES, TENSORRT: ("cuda", "tensorrt")}


def torch_available() -> bool:
    """True if PyTorch can be imported (decides the default backend of a checkpoint)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def resolve_model_path(model: str | os.PathLike) -> Path:
    """Map MODEL (``default``, a checkpoint file or an export directory) to a path."""
    if str(model) == "default":
        return DEFAULT_CHECKPOINT
    path = Path(model)
    if not path.exists():
        raise InputError(
            f"{path}: no such model (expected a checkpoint, an export dir or 'default')"
        )
    return path


def resolve_export_dir(model: str | os.PathLike) -> Path:
    """MODEL for a runtime backend: an export directory, or 'default' (the shipped export)."""
    if str(model) == "default":
        if not (DEFAULT_EXPORT / "manifest.json").is_file():
            raise ConfigError(
                f"{DEFAULT_EXPORT}: the package ships no exported default model "
                "(build it with tools/export_default.sh, or use --backend torch)"
            )
        return DEFAULT_EXPORT
    path = resolve_model_path(model)
    if not path.is_dir():
        raise ConfigError(
            f"{path}: runtime backends need an export directory; export the checkpoint "
            f"first: icnseg export {path} --out DIR"
        )
    return path


def check_device(backend: str, device: str | None) -> str:
    """The device ``backend`` runs on (its default when None); ConfigError if it cannot."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    allowed = BACKEND_DEVICES[backend]
    if device is None:
        return allowed[0]
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device not in allowed:
        hint = (f"the GPU: use --device cuda (or --backend onnxruntime --device {device})"
                if backend == TENSORRT else
                f"{' or '.join(allowed)} here (export it and use --backend onnxruntime on a GPU)")
        raise ConfigError(f"--device {device}: the {backend} backend runs on {hint}")
    return device


# --device as users mean it (where the networks run) and ONNX Runtime's GPU providers.
USER_DEVICES = ("cpu", "cuda")
PROVIDERS = ("cuda", "tensorrt")  # ONNX Runtime's CUDA or TensorRT execution provider


def device_for(backend: str, device: str | None, provider: str | None = None) -> str:
    """The internal device of ``backend`` from ``--device`` and ``--provider``: ONNX Runtime's
    TensorRT execution provider is device "tensorrt"; ConfigError for a combination that does
    not exist (a provider off the GPU, or for another backend)."""
    if provider is not None:
        if provider not in PROVIDERS:
            raise ConfigError(f"--provider {provider}: choose one of {', '.join(PROVIDERS)}")
        if backend != ONNXRUNTIME:
            raise ConfigError(f"--provider {provider}: only the onnxruntime backend has "
                              f"execution providers (the {backend} backend was chosen)")
        if device not in (None, "cuda"):
            raise ConfigError(f"--provider {provider} runs on the GPU: use --device cuda")
        return check_device(backend, "tensorrt" if provider == "tensorrt" else "cuda")
    return check_device(backend, device)


def _engines_built(export_dir: Path) -> bool:
    """True when ``build-engine`` left engines in the export and TensorRT can be imported."""
    engines = export_dir / "engines"
    if not engines.is_dir() or not any(engines.glob("*.engine")):
        return False
    return any(importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_rtx"))


def auto_backend(model: str | os.PathLike) -> tuple[str, str]:
    """(backend, why) for MODEL: what it is and what this machine has."""
    if str(model) == "default":
        if torch_available():
            return TORCH, "the embedded checkpoint, PyTorch found"
        return ONNXRUNTIME, "the embedded model's export, PyTorch not installed"
    path = resolve_model_path(model)
    if path.is_dir():
        if _engines_built(path):
            return TENSORRT, "an export directory with TensorRT engines"
        return ONNXRUNTIME, "an export directory"
    return TORCH, "a checkpoint file"


def load(model: str | os.PathLike = "default", backend: str | None = None,
         device: str | None = None, precision: str | None = None,
         threads: int | None = None) -> Any:
    """Load MODEL as a Segmenter on ``backend`` (None: chosen by ``auto_backend``).

    ``precision`` picks among TensorRT engines of several precisions (None: the newest).
    ``threads``: intra-op threads per ONNX Runtime session (None: ONNX Runtime's default).
    """
    if backend in (None, "auto"):
        backend, _ = auto_backend(model)
    device = check_device(backend, device)
    if backend == TORCH:
        if threads is not None:
            raise ConfigError(f"threads={threads}: PyTorch's thread count is per process "
                              "(torch.set_num_threads), not per model")
        from icnseg.checkpoint import load_checkpoint
        from icnseg.eager import EagerModel

        path = resolve_model_path(model)
        if path.is_dir():
            raise InputError(
                f"{path}: is a directory; the torch backend needs a checkpoint file "
                "(use --backend onnxruntime for an export directory)"
            )
        return EagerModel.from_checkpoint(load_checkpoint(path))
    from icnseg.runtime.exported_model import ExportedModel

    return ExportedModel(resolve_export_dir(model), backend=backend, device=device,
                         precision=precision, threads=threads)
