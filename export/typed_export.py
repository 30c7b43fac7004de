"""An fp16 or int8 export directory: FP32 graphs -> calibration -> typed graphs -> measured.

The FP32 graphs are written to a scratch export first (the reference every measurement uses),
the calibration images go through the runtime's preprocessing and the FP32 prm.onnx, the
typed graphs are made (``export.precision``), written into the atomic directory with a
manifest that records the precision per graph, the calibration set and the accuracy measured
against FP32; a miss of the precision's bound raises before the directory appears.
Without ``--calib``, fp16 calibrates on synthetic shapes images (seed 0), said so in the
manifest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from icnseg.artifacts.manifest import FILES
from icnseg.fileio import atomic_dir

SYNTH_CALIB = 16  # images of the fp16 default calibration set


def _synthetic_folder(folder: Path, size: tuple[int, int]) -> Path:
    """Write SYNTH_CALIB synthetic shapes images (seed 0) into ``folder``."""
    from PIL import Image

    from icnseg.export.parity import parity_images

    folder.mkdir()
    for i, image in enumerate(parity_images(size, SYNTH_CALIB, seed=0)):
        Image.fromarray(image).save(folder / f"synth_{i:03d}.png")
    return folder


def write_typed_export(out_dir: str | os.PathLike, graphs: dict[str, Any],
                       facts: dict[str, Any], calib: str | os.PathLike | None, method: str,
                       activations: str, force: bool, parity_model: Any = None
                       ) -> tuple[dict[str, Any], dict[str, int], dict[str, Any] | None]:
    """Write the ``facts["precision"]`` export of the FP32 ``graphs`` into ``out_dir``; with
    ``parity_model`` (the eager model) the FP32 graphs' parity report comes back too."""
    import onnx

    from icnseg.export.accuracy import check_accuracy, measure_against_fp32
    from icnseg.export.calibrator import load_calibration
    from icnseg.export.exporter import write_export
    from icnseg.export.precision import fp16_graphs, int8_graphs
    from icnseg.fileio import check_output_dir

    precision = facts["precision"]
    check_output_dir(out_dir, force)  # before minutes of calibration, not after
    with tempfile.TemporaryDirectory(prefix="icnseg-typed-") as work:
        work = Path(work)
        ref_dir = work / "fp32"
        ref_dir.mkdir()
        write_export(ref_dir, graphs, {k: v for k, v in facts.items() if k != "precision"})
        parity = None
        if parity_model is not None:
            from icnseg.export.parity import check_export

            parity = check_export(parity_model, ref_dir)
        folder = Path(calib) if calib else _synthetic_folder(work / "synthetic",
                                                             tuple(facts["input_size"]))
        cal = load_calibration(folder, ref_dir / FILES["prm"], facts, need_peaks="icn" in graphs)
        src = {role: ref_dir / FILES[role] for role in graphs}
        if precision == "fp16":
            typed = fp16_graphs(src, cal, work)
        else:
            typed = int8_graphs(src, cal, work, method, activations)
        facts = {**facts, "calibration": {**cal.record(method if precision == "int8" else None),
                                          "folder": str(calib) if calib else
                                          f"synthetic shapes (seed 0, {SYNTH_CALIB} images)"}}
        if precision == "int8":
            facts["quantization"] = {"activations": activations, "weights": "symmetric "
                                     "per-channel", "format": "QDQ", "method": method}
        per_graph = {role: rec for role, (_, rec) in typed.items()}
        models = {role: onnx.load(str(path)) for role, (path, _) in typed.items()}
        with atomic_dir(out_dir, force=force) as tmp:
            manifest, _ = write_export(tmp, models, facts, per_graph)
            record = measure_against_fp32(ref_dir, tmp, cal.images, precision)
            worst = "icn" if "icn" in typed and typed["icn"][1]["precision"] != "fp32" else "prm"
            check_accuracy(record, precision, Path(out_dir) / FILES[worst])
            # The record goes into the manifest only: the ONNX files (and their hashes) stay.
            manifest, sizes = _add_accuracy(tmp, manifest, record)
    return manifest, sizes, parity


def _add_accuracy(tmp: Path, manifest: dict[str, Any], record: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, int]]:
    """Rewrite ``tmp/manifest.json`` with the accuracy record."""
    import json

    from icnseg.artifacts.manifest import MANIFEST
    from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest

    manifest = {**manifest, "accuracy": record}
    manifest[DIGEST_KEY] = manifest_digest(manifest)  # the record is part of what is checked
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (tmp / MANIFEST).write_text(text, encoding="utf-8")
    sizes = {entry["path"]: int(entry["bytes"]) for entry in manifest["files"].values()}
    sizes[MANIFEST] = len(text.encode())
    return manifest, sizes
