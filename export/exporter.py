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
    parity: dict[str, Any] | None = None  # fp16/int8: parity of their FP32 graphs with torch


def load_eager(model: Any):
    """(EagerModel, source) from 'default', a checkpoint path or a loaded EagerModel."""
    from icnseg.eager import EagerModel
    from icnseg.loader import TORCH, load, resolve_model_path

    if isinstance(model, EagerModel):
        return model, model.source
    path = resolve_model_path(model)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; export needs a checkpoint file")
    return load(path, backend=TORCH), str(path)


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
    precision: str = "fp32",
    calib: str | os.PathLike | None = None,
    calib_method: str = "minmax",
    int8_activations: str = "symmetric",
    check_fp32: bool = False,
) -> ExportResult:
    """Export MODEL ('default', a checkpoint or a Model) to ``out_dir`` atomically.

    ``precision`` fp16/int8 types the graphs (``export.precision``) on the calibration
    images of ``calib`` and measures them against the FP32 graphs before anything is written.
    """
    from icnseg.export.icn_graph import build_icn_onnx
    from icnseg.export.prm_graph import build_prm_onnx

    t0 = time.perf_counter()
    check_precision_options(precision, calib, calib_method, int8_activations)
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
    if precision == "fp32":  # no top-level key: FP32 exports stay byte-identical to older ones
        with atomic_dir(out_dir, force=force) as tmp:
            manifest, sizes = write_export(tmp, graphs, facts)
        return ExportResult(Path(out_dir), manifest, sizes, time.perf_counter() - t0)
    from icnseg.export.typed_export import write_typed_export

    facts["precision"] = precision
    manifest, sizes, parity = write_typed_export(out_dir, graphs, facts, calib, calib_method,
                                                 int8_activations, force,
                                                 m if check_fp32 else None)
    return ExportResult(Path(out_dir), manifest, sizes, time.perf_counter() - t0, parity)


def check_precision_options(precision: str, calib: str | os.PathLike | None, method: str,
                            activations: str) -> None:
    """ConfigError for a precision option that does not fit the others."""
    from icnseg.artifacts.manifest import PRECISIONS
    from icnseg.export.int8 import ACTIVATIONS, check_method

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not calib:
        raise ConfigError("--precision int8 needs calibration images: add --calib IMAGES "
                          "(a folder of images like the ones it will see)")
    if precision == "fp32" and calib:
        raise ConfigError("--calib is only used with --precision fp16 or int8")
    check_method(method)
    if activations not in ACTIVATIONS:
        raise ConfigError(f"--int8-activations {activations!r}: choose one of "
                          f"{', '.join(ACTIVATIONS)}")


def write_export(tmp: Path, graphs: dict[str, Any], facts: dict[str, Any],
                 per_graph: dict[str, dict[str, Any]] | None = None
                 ) -> tuple[dict[str, Any], dict[str, int]]:
    """Write ``graphs`` (ModelProtos), with metadata, and manifest.json into ``tmp``."""
    tmp.chmod(0o755)  # mkdtemp makes it 0700; an export is meant to be shared
    meta = metadata_entries(facts)
    files: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    for role, graph in graphs.items():
        data = add_metadata(graph, {**meta, "icnseg.graph": role}).SerializeToString()
        if len(data) >= 2**31:
            raise ExportError(f"{role}.onnx would exceed ONNX's 2 GB protobuf limit")
        (tmp / FILES[role]).write_bytes(data)
        files[role] = {"path": FILES[role], "sha256": sha256_file(tmp / FILES[role]),
                       "bytes": len(data), **(per_graph or {}).get(role, {})}
        files[role].setdefault("precision", "fp32")
        sizes[FILES[role]] = len(data)
    manifest = {**facts, "files": files}
    manifest[DIGEST_KEY] = manifest_digest(manifest)  # any later edit is detected
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (tmp / MANIFEST).write_text(text, encoding="utf-8")
    sizes[MANIFEST] = len(text.encode())
    return manifest, sizes
