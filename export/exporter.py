"""Checkpoint -> export directory (prm.onnx, icn.onnx, manifest.json), written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from icnseg import __version__
from icnseg.artifacts.manifest import (
    FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    add_metadata,
    metadata_entries,
    sha256_file,
)
from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest
from icnseg.errors import CheckpointError, ConfigError, ExportError
from icnseg.fileio import atomic_dir
from icnseg.settings import SegmentConfig, check_rule, config_from_dict


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where the export went, its manifest, file sizes (bytes) and seconds taken."""

    out_dir: Path
    manifest: dict[str, Any]
    sizes: dict[str, int]
    seconds: float


def load_eager(model: Any):
    """(EagerModel, source) from 'default', a checkpoint path or a loaded EagerModel."""
    from icnseg.eager import EagerModel
    from icnseg.loader import load, resolve_model_path

    if isinstance(model, EagerModel):
        return model, model.source
    path = resolve_model_path(model)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; export needs a checkpoint file")
    return load(path, backend="torch"), str(path)


def export_config(model, peaks: int, rule: str) -> SegmentConfig:
    """The model's segment settings with K_max = ``peaks`` and the exported backward rule."""
    check_rule(rule, "--rule")
    if peaks < 1:
        raise ConfigError(f"--peaks must be >= 1 (got {peaks})")
    base = config_from_dict(model.config)
    cfg = dataclasses.replace(base, rule=rule,
                              peaks=dataclasses.replace(base.peaks, max_peaks=peaks))
    if model.icn is None and cfg.iterations:
        cfg = dataclasses.replace(cfg, iterations=0)  # stage-1 checkpoint: naive PRM only
    return cfg


def _check_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Validate an export input size: positive, multiple of 16 (ICN) and of the CRM stride."""
    h, w = (int(v) for v in size)
    step = max(16, stride)
    if h < step or w < step or h % step or w % step:
        raise ConfigError(f"--size {h} {w}: both sides must be positive multiples of {step}")
    return h, w


def checkpoint_to_onnx(
    model: str | os.PathLike | Any,
    out_dir: str | os.PathLike,
    size: tuple[int, int] | None = None,
    peaks: int = 32,
    rule: str = "prm",
    opset: int = 17,
    dynamic_size: bool = False,
    unroll: int = 1,
    force: bool = False,
    dynamic_k: bool = False,
) -> ExportResult:
    """Export MODEL ('default', a checkpoint or a Model) to ``out_dir`` atomically."""
    from icnseg.export.icn_graph import build_icn_onnx
    from icnseg.export.prm_graph import build_prm_onnx

    t0 = time.perf_counter()
    m, source = load_eager(model)
    cfg = export_config(m, peaks, rule)
    hh, ww = _check_size(size or m.input_size, int(getattr(m.classifier, "stride", 1)))
    if unroll < 1 or (m.icn is not None and cfg.iterations and cfg.iterations % unroll):
        raise ConfigError(f"--unroll {unroll} must be >= 1 and divide T = {cfg.iterations}")
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset {opset}: supported opsets are 13..21")
    src = Path(source)
    facts = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "package_version": __version__,
        "classes": list(m.classes),
        "input_size": [hh, ww],
        "mean": [float(v) for v in m.mean],
        "std": [float(v) for v in m.std],
        "backbone": m.config.get("backbone"),
        "icn_encoder": m.config.get("icn_encoder") if m.icn is not None else None,
        "k_max": int(peaks),
        "rule": rule,
        "opset": int(opset),
        "unroll": int(unroll),
        "dynamic_size": bool(dynamic_size),
        "dynamic_k": bool(dynamic_k),
        "segment": cfg.to_dict(),
        "source": {
            "checkpoint": src.name,
            "sha256": sha256_file(src) if src.is_file() else "",
        },
    }
    graphs = {"prm": build_prm_onnx(m.classifier, cfg.peaks, (hh, ww), k_max=peaks, rule=rule,
                                    mean=m.mean, std=m.std, opset=opset, dynamic_k=dynamic_k)}
    if m.icn is not None:
        graphs["icn"] = build_icn_onnx(m.icn, (hh, ww), opset=opset,
                                       dynamic_size=dynamic_size, unroll=unroll)
    meta = metadata_entries(facts)
    files: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    with atomic_dir(out_dir, force=force) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it 0700; an export is meant to be shared
        for role, graph in graphs.items():
            data = add_metadata(graph, {**meta, "icnseg.graph": role}).SerializeToString()
            if len(data) >= 2**31:
                raise ExportError(f"{role}.onnx would exceed ONNX's 2 GB protobuf limit")
            (tmp / FILES[role]).write_bytes(data)
            files[role] = {"path": FILES[role], "sha256": sha256_file(tmp / FILES[role]),
                           "bytes": len(data)}
            sizes[FILES[role]] = len(data)
        manifest = {**facts, "files": files}
        manifest[DIGEST_KEY] = manifest_digest(manifest)  # any later edit is detected
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        sizes[MANIFEST] = len(text.encode())
    return ExportResult(Path(out_dir), manifest, sizes, time.perf_counter() - t0)
