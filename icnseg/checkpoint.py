"""Checkpoint files: model tensors + a JSON config, loaded without ever unpickling code.

Two formats, told apart by their bytes, not their names:
- ``.safetensors``: tensors, with the config JSON in the header metadata (the shipped default);
- ``.pt``: ``torch.save`` of plain dicts/tensors, loaded with ``weights_only=True``.
Model keys are prefixed ``classifier.`` and ``icn.``.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icnseg.errors import BackendUnavailable, CheckpointError
from icnseg.fileio import atomic_path

FORMAT = "icnseg-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds: the model state dict and the config it was trained with."""

    path: Path
    state: dict[str, Any]  # name -> torch.Tensor
    config: dict[str, Any]

    def sub_state(self, prefix: str) -> dict[str, Any]:
        """Return the entries under ``prefix.`` with the prefix removed."""
        p = prefix + "."
        return {k[len(p) :]: v for k, v in self.state.items() if k.startswith(p)}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(
            "loading a checkpoint needs PyTorch: pip install 'icnseg[train]' torch==2.13.0 "
            "(or use an exported model directory with --backend onnxruntime)"
        ) from exc
    return torch


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], config: dict[str, Any]) -> Path:
    """Atomically write ``state`` (name -> tensor) and ``config`` to a .safetensors or .pt file."""
    path = Path(path)
    torch = _torch()
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": config}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"icnseg": json.dumps(meta)})
        else:
            torch.save({"icnseg": json.dumps(meta), "state": state}, tmp)
    return path


def is_pickle_refusal(exc: BaseException) -> bool:
    """True when torch.load(weights_only=True) refused a pickled object (not a damaged file)."""
    text = str(exc)
    return "Unsupported global" in text or "weights_only" in text


def load_failure(exc: BaseException) -> str:
    """One line saying why a torch / safetensors file did not load (torch's advice to retry
    with weights_only=False is dropped: that is how a malicious file would run its code)."""
    text = str(exc)
    if is_pickle_refusal(exc):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"contains pickled code or objects{what}; refused: icnseg loads plain tensors "
                "only and never unpickles code")
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _sniff(path: Path) -> str:
    """Return 'zip' (torch.save) or 'safetensors' from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    raise CheckpointError(f"{path}: not an icnseg checkpoint (neither safetensors nor torch zip)")


def _parse_meta(path: Path, raw: str | None) -> dict[str, Any]:
    if raw is None:
        raise CheckpointError(
            f"{path}: has no icnseg metadata (a bare state dict? train with `icnseg train`, "
            "or pass backbone weights with --pretrained)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: icnseg metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an icnseg checkpoint (metadata format mismatch)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('version')} is not supported "
            f"(this icnseg reads version {FORMAT_VERSION})"
        )
    return meta["config"]


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's config without its tensors (a .safetensors header; a .pt file loads)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if _sniff(path) != "safetensors":
        return load_checkpoint(path).config
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        raw = (header.get("__metadata__") or {}).get("icnseg")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint header ({exc})") from exc
    return _parse_meta(path, raw)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint safely; a missing, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    torch = _torch()
    kind = _sniff(path)
    try:
        if kind == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("icnseg")
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
        else:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise CheckpointError(f"{path}: corrupt checkpoint (bad member {bad})")
            obj = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or "state" not in obj:
                raise CheckpointError(f"{path}: not an icnseg checkpoint (no 'state' entry)")
            raw, state = obj.get("icnseg"), obj["state"]
    except CheckpointError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for damaged files
        if is_pickle_refusal(exc):
            raise CheckpointError(f"{path}: {load_failure(exc)}") from exc
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint "
                              f"({load_failure(exc)})") from exc
    return Checkpoint(path=path, state=state, config=_parse_meta(path, raw))
