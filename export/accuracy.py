"""What a quantised export loses against its FP32 graphs, measured on the calibration images.

Both exports run the whole pipeline through ONNX Runtime (CPU) on the same prepared images
and proposals: peaks (identical?), naive PRM error per peak (relative to max|R|), ICN map
error (max abs, and the share of pixels whose binarised value differs) and instance
agreement (same class, score within the tolerance, mask IoU). ``check_accuracy`` raises
ExportError naming the quantised graph when ``TOLERANCES[precision]`` is missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.compare import TOLERANCES, instance_agreement, per_peak_err, stage_differences
from icnseg.errors import ExportError


def measure_against_fp32(fp32_dir: Path, typed_dir: Path, images: Sequence[Path],
                         precision: str) -> dict[str, Any]:
    """The manifest's ``accuracy`` record: worst errors and agreement over ``images``."""
    from icnseg.data.voc import read_image
    from icnseg.runtime.exported_model import ExportedModel

    tol = TOLERANCES[precision]
    peaks_same = prm_err = map_err = 0.0
    flipped = pixels = matched = total = 0
    ious: list[float] = []
    problems: list[str] = []
    with ExportedModel(fp32_dir) as ref, ExportedModel(typed_dir) as typed:
        cfg = ref.segment_config()
        for path in images:
            prepared = ref.prepare(read_image(path))
            s_ref, s_typed = ref.infer(prepared, cfg), typed.infer(prepared, cfg)
            same = len(s_ref.peaks) == len(s_typed.peaks) and np.array_equal(
                s_ref.peaks[:, :3], s_typed.peaks[:, :3])
            peaks_same += same
            problems += [f"{path.name}: {p}" for p in stage_differences(s_ref, s_typed, tol)]
            if same and len(s_ref.peaks):
                prm_err = max(prm_err, per_peak_err(s_typed.prm, s_ref.prm))
                if s_ref.enhanced is not None:
                    diff = np.abs(s_ref.enhanced - s_typed.enhanced)
                    map_err = max(map_err, float(diff.max()))
                    thr = cfg.threshold
                    flipped += int(((s_ref.enhanced >= thr) != (s_typed.enhanced >= thr)).sum())
                    pixels += s_ref.enhanced.size
            i_ref = ref.select(prepared, s_ref, cfg)
            i_typed = typed.select(prepared, s_typed, cfg)
            n, got = instance_agreement(i_ref, i_typed, tol)
            matched, total, ious = matched + n, total + len(i_ref), ious + got
    return {
        "images": len(images), "reference": "fp32 graphs of this export",
        "peaks_identical": int(peaks_same), "prm_max_rel_err": prm_err,
        "icn_map_max_abs_err": map_err,
        "icn_binarised_flipped": flipped / pixels if pixels else 0.0,
        "instances": total, "instances_agree": matched,
        "agreement": matched / total if total else 1.0,
        "mean_mask_iou": float(np.mean(ious)) if ious else None,
        "tolerance": {"prm": tol.prm, "maps": tol.maps, "score": tol.score,
                      "mask_iou": tol.mask_iou, "agree": tol.agree},
        "problems": problems[:20],
    }


def check_accuracy(record: dict[str, Any], precision: str, graph: Path) -> None:
    """ExportError naming ``graph`` when the measured record misses the precision's bound."""
    tol = TOLERANCES[precision]
    why = []
    if record["peaks_identical"] < record["images"]:
        why.append(f"peaks differ on {record['images'] - record['peaks_identical']} of "
                   f"{record['images']} calibration images")
    if record["problems"]:
        why.append(record["problems"][0])
    if record["agreement"] < tol.agree:
        why.append(f"{record['instances_agree']} of {record['instances']} instances agree with "
                   f"FP32 (< {tol.agree:.0%})")
    if why:
        raise ExportError(f"{graph}: the {precision} graph misses the accuracy bound against "
                          f"FP32 ({'; '.join(why)}); nothing was written")


def format_accuracy(manifest: dict[str, Any]) -> str:
    """Lines saying what each graph's precision is and what it measured against FP32."""
    rec = manifest.get("accuracy") or {}
    graphs = ", ".join(f"{role}.onnx {e.get('precision', 'fp32')}"
                       for role, e in manifest["files"].items())
    iou = rec.get("mean_mask_iou")
    return (f"precision {manifest.get('precision', 'fp32')}: {graphs}\n"
            f"vs FP32 on {rec.get('images', 0)} calibration image(s): peaks identical on "
            f"{rec.get('peaks_identical', 0)}, PRM err {rec.get('prm_max_rel_err', 0):.2g} x "
            f"max|R|, ICN map err {rec.get('icn_map_max_abs_err', 0):.3g} (binarised pixels "
            f"flipped {rec.get('icn_binarised_flipped', 0):.3%}), instances agree "
            f"{rec.get('instances_agree', 0)}/{rec.get('instances', 0)}"
            + (f", mean mask IoU {iou:.3f}" if iou is not None else ""))
