"""Output agreement between benchmarked backends: no time is reported for wrong outputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icnseg.errors import IcnsegError
from icnseg.instance import Instance
from icnseg.segmenter import Stages

MAP_TOL = 1e-3  # max abs error of PRMs, relative to the reference's max |R|
ENHANCED_TOL = 1e-3  # max abs error of the ICN maps (values in [0, 1])
SCORE_TOL = 1e-3  # instance scores
MASK_IOU = 0.99  # minimum IoU of corresponding instance masks


class BenchmarkError(IcnsegError):
    """Benchmarked backends disagree, so no timing is reported."""


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks (two empty masks: 1)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def stage_differences(ref: Stages, other: Stages) -> list[str]:
    """Ways ``other``'s peaks and maps differ from ``ref``'s beyond the tolerances."""
    if len(ref.peaks) != len(other.peaks):
        return [f"{len(other.peaks)} peaks instead of {len(ref.peaks)}"]
    out = []
    if len(ref.peaks) and not np.array_equal(ref.peaks[:, :3].round(), other.peaks[:, :3].round()):
        out.append("different peak positions or classes")
    if len(ref.prm):
        err = float(np.abs(ref.prm - other.prm).max())
        scale = float(np.abs(ref.prm).max()) or 1.0
        if err > MAP_TOL * scale:
            out.append(f"PRM max abs error {err:.3g} > {MAP_TOL:g} x max|R| ({scale:.3g})")
    if (ref.enhanced is None) != (other.enhanced is None):
        out.append("ICN maps present in one backend only")
    elif ref.enhanced is not None and len(ref.enhanced):
        err = float(np.abs(ref.enhanced - other.enhanced).max())
        if err > ENHANCED_TOL:
            out.append(f"ICN map max abs error {err:.3g} > {ENHANCED_TOL:g}")
    return out


def instance_differences(ref: Sequence[Instance], other: Sequence[Instance]) -> list[str]:
    """Ways ``other``'s instances differ from ``ref``'s (order, class, score, mask)."""
    if len(ref) != len(other):
        return [f"{len(other)} instances instead of {len(ref)}"]
    out = []
    for i, (a, b) in enumerate(zip(ref, other, strict=True)):
        if a.class_name != b.class_name:
            out.append(f"instance {i}: class {b.class_name} instead of {a.class_name}")
        elif abs(a.score - b.score) > SCORE_TOL:
            out.append(f"instance {i}: score {b.score:.4f} instead of {a.score:.4f}")
        elif a.mask.shape != b.mask.shape or _iou(a.mask, b.mask) < MASK_IOU:
            out.append(f"instance {i}: mask differs (IoU {_iou(a.mask, b.mask):.3f})")
    return out


def check_agreement(reference: str, results: dict[str, list[tuple[list[Instance], Stages]]],
                    image_names: Sequence[str]) -> None:
    """BenchmarkError listing every disagreement of any backend with ``reference``."""
    problems = []
    for name, per_image in results.items():
        if name == reference:
            continue
        for image, (ref, got) in zip(image_names, zip(results[reference], per_image,
                                                      strict=True), strict=True):
            for p in stage_differences(ref[1], got[1]) + instance_differences(ref[0], got[0]):
                problems.append(f"{name} vs {reference} on {image}: {p}")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BenchmarkError(f"backends disagree, no timings reported:\n  {shown}{more}")
