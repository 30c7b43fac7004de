"""manifest.json of an export directory: what the ONNX files are and how to run them (torch-free).

The manifest records the model facts (classes, input size, mean/std), the graph settings
(K_max, rule, opset, ICN unroll), the precision (``precision``, absent for FP32; per graph
``files.<role>.precision``; the calibration set's digest under ``calibration`` and what the
export measured against FP32 under ``accuracy``), the full segment config (thresholds, peak
finding, Eq. 5 α/β/γ, scoring, NMS IoU), the sha256 of every ONNX file and of the source
checkpoint, and the package version. Each ONNX file carries the same facts in
``metadata_props`` (key ``icnseg.manifest``), except the file hashes: a file cannot contain
its own hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icnseg.errors import InputError

if TYPE_CHECKING:  # onnx is an export-time dependency; the runtime reads manifests without it
    import onnx

FORMAT = "icnseg-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = {"prm": "prm.onnx", "icn": "icn.onnx"}
# Numeric precision of an export (key "precision"; per graph files.<role>.precision): the
# types are in the ONNX graphs (FP16 casts, INT8 Q/DQ), so every backend runs them as written.
PRECISIONS = ("fp32", "fp16", "int8")
_REQUIRED = ("classes", "input_size", "mean", "std", "k_max", "rule", "unroll", "segment", "files")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def add_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> onnx.ModelProto:
    """Set ``metadata_props`` entries (existing keys are overwritten); returns ``model``."""
    old = {p.key: p.value for p in model.metadata_props}
    old.update(entries)
    del model.metadata_props[:]
    for key in sorted(old):
        p = model.metadata_props.add()
        p.key, p.value = key, old[key]
    return model


def metadata_entries(facts: dict[str, Any]) -> dict[str, str]:
    """The metadata_props for ``facts``: the whole JSON plus a few keys for quick lookups."""
    seg = facts["segment"]
    return {
        "icnseg.manifest": json.dumps(facts, sort_keys=True),
        "icnseg.format": f"{FORMAT}/{FORMAT_VERSION}",
        "icnseg.classes": json.dumps(list(facts["classes"])),
        "icnseg.input_size": json.dumps(list(facts["input_size"])),
        "icnseg.mean": json.dumps(list(facts["mean"])),
        "icnseg.std": json.dumps(list(facts["std"])),
        "icnseg.k_max": str(facts["k_max"]),
        "icnseg.rule": facts["rule"],
        "icnseg.unroll": str(facts["unroll"]),
        "icnseg.iterations": str(seg["iterations"]),
        "icnseg.segment_config": json.dumps(seg, sort_keys=True),
        "icnseg.source_sha256": facts["source"]["sha256"],
        "icnseg.package_version": facts["package_version"],
        "icnseg.opset": str(facts["opset"]),
    }


def read_manifest(export_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and validate ``export_dir/manifest.json``; InputError names the file on any problem."""
    path = Path(export_dir) / MANIFEST
    if not Path(export_dir).is_dir():
        raise InputError(f"{export_dir}: not an export directory (run `icnseg export` first)")
    if not path.is_file():
        raise InputError(f"{path}: no manifest; not an icnseg export directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not an icnseg export manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: manifest version {manifest.get('version')} is not supported "
                         f"(this icnseg reads version {FORMAT_VERSION})")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise InputError(f"{path}: manifest lacks {', '.join(missing)}")
    from icnseg.artifacts.manifest_schema import validate_manifest

    validate_manifest(path, manifest)
    return manifest


def export_precision(manifest: dict[str, Any], export_dir: str | os.PathLike = "") -> str:
    """The export's precision (exports older than the key are fp32); InputError if unknown."""
    precision = manifest.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise InputError(f"{Path(export_dir) / MANIFEST}: precision {precision!r} is not one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "int8" and not (manifest.get("calibration") or {}).get("sha256"):
        raise InputError(f"{Path(export_dir) / MANIFEST}: precision int8 without a "
                         "calibration record")
    return precision


def verify_files(export_dir: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Path]:
    """Check every listed ONNX file exists with the recorded sha256; return {role: path}."""
    out = {}
    for role, entry in manifest["files"].items():
        path = Path(export_dir) / entry["path"]
        if not path.is_file():
            raise InputError(f"{path}: listed in {MANIFEST} but missing")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise InputError(f"{path}: sha256 {digest[:12]}... does not match {MANIFEST} "
                             f"({entry['sha256'][:12]}...); the file was modified or corrupted, "
                             "re-export it")
        out[role] = path
    return out
