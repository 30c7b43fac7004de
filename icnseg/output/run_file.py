"""``run.json``: what a run into an output folder ran, on what, with which settings (once).

Written atomically into the output folder once, before the first record (a run that writes
no record leaves none; ``icnseg run --ray`` writes it on the driver before the workers)::

    {"format": "icnseg-run", "version": 1, "icnseg": version,
     "model": {"source": path, "kind": "checkpoint" | "export", "sha256": hex,
               "files": {name: sha256}},
     "backend": name, "device": name, "proposals": "builtin" | folder,
     "segment": SegmentConfig.to_dict()}

``model.sha256`` identifies the weights: for a checkpoint the sha256 of its file; for an
export directory the manifest's own digest (``manifest_sha256``), which covers the sha256 of
every graph listed under ``files``. ``segment`` is the full segmentation settings, so
``--config run.json`` runs them again. ``--resume`` into a folder whose ``run.json`` records
other settings is refused: the kept records would mix with new ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icnseg import __version__
from icnseg.errors import ConfigError, InputError
from icnseg.fileio import write_text
from icnseg.outdir import OutputDir

RUN_FILE = "run.json"  # the stem "run" is reserved: an image run.jpg gets stem run-1
FORMAT = "icnseg-run"
FORMAT_VERSION = 1


def model_path(model: str, backend: str) -> Path:
    """The checkpoint file (torch) or export directory (other backends) MODEL names."""
    from icnseg.loader import TORCH, resolve_export_dir, resolve_model_path

    return resolve_model_path(model) if backend == TORCH else resolve_export_dir(model)


def model_record(path: Path) -> dict[str, Any]:
    """Source, kind and sha256 of a checkpoint file or export directory (files verified)."""
    from icnseg.artifacts.manifest import read_manifest, sha256_file, verify_files
    from icnseg.artifacts.manifest_schema import DIGEST_KEY

    if path.is_dir():
        manifest = read_manifest(path)
        verify_files(path, manifest)  # the recorded graph digests are the files' own
        files = {e["path"]: e["sha256"] for _, e in sorted(manifest["files"].items())}
        return {"source": str(path), "kind": "export", "sha256": manifest[DIGEST_KEY],
                "files": files}
    digest = sha256_file(path)
    return {"source": str(path), "kind": "checkpoint", "sha256": digest,
            "files": {path.name: digest}}


def recorded_settings(path: Path) -> dict[str, Any]:
    """The segment settings a model records, read without loading its networks."""
    if path.is_dir():
        from icnseg.artifacts.manifest import read_manifest

        return {"segment": read_manifest(path)["segment"]}
    from icnseg.checkpoint import read_config

    return read_config(path)


def run_record(model: str, backend: str, device: str, proposals: str,
               cfg: Any) -> dict[str, Any]:
    """The ``run.json`` of a run of MODEL on ``backend``/``device`` with SegmentConfig ``cfg``."""
    record = {"format": FORMAT, "version": FORMAT_VERSION, "icnseg": __version__,
              "model": model_record(model_path(model, backend)), "backend": backend,
              "device": device, "proposals": proposals, "segment": cfg.to_dict()}
    return json.loads(json.dumps(record, allow_nan=False))  # tuples as lists, as on disk


def _first_difference(old: Any, new: Any, key: str = "") -> str | None:
    """The dotted key where two JSON values first differ (None when equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            if k == "source" and key == "model":
                continue  # the same weights named by another path
            found = _first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else k)
            if found is not None:
                return found
        return None
    return None if old == new else key


def _value(record: Any, key: str) -> str:
    """The JSON text of ``record``'s value at a dotted key (null when absent)."""
    for part in key.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return json.dumps(record)


def check_run_file(out: OutputDir, record: dict[str, Any]) -> bool:
    """True when ``out`` needs ``run.json`` written; ConfigError when the one --resume kept
    records other settings (checked before any work)."""
    path = out.path / RUN_FILE
    if not out.has_whole(RUN_FILE):
        return True
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the earlier run's settings ({exc})") from exc
    key = _first_difference(old, record)
    if key is None:
        return False
    raise ConfigError(f"{path}: the earlier run used other settings ({key} "
                      f"{_value(old, key)}, now {_value(record, key)}); --resume would mix "
                      f"them: rerun with its settings (--config {path}, the same model, "
                      "backend and device) or drop --resume to redo every image")


def write_run_file(out: OutputDir, record: dict[str, Any]) -> None:
    """Atomically write ``record`` as ``out``'s ``run.json`` (logged in the folder's marker)."""
    write_text(out.claim(RUN_FILE), json.dumps(record, indent=2, allow_nan=False) + "\n")
