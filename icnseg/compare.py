"""One comparator and one tolerance table for outputs of two backends (or two precisions).

Used by ``icnseg export --check`` (ONNX Runtime vs PyTorch), ``icnseg bench`` (every backend
vs the reference, before any timing) and the tests. A ``Tolerance`` says how close a pair
must be; ``TOLERANCES`` names the ones in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from icnseg.instance import Instance
from icnseg.nms import mask_iou
from icnseg.segmenter import Stages


@dataclass(frozen=True)
class Tolerance:
    """How far a pair of outputs may be apart."""

    prm: float  # max |R - R_ref| / max |R_ref| (naive PRMs)
    maps: float  # max |V - V_ref| of the ICN maps (values in [0, 1]); class maps relative
    score: float  # max |s - s_ref| of instance scores
    mask_iou: float  # min IoU of corresponding instance masks
    # Quantised runs only: min fraction of reference instances that have a counterpart
    # (same class, score within ``score``, IoU >= ``mask_iou``) over a set of images;
    # 1.0 keeps the one-to-one comparison of ``instance_differences``.
    agree: float = 1.0


TOLERANCES: dict[str, Tolerance] = {
    # DESIGN "Parity is a test": an FP32 export vs PyTorch, per peak.
    "export": Tolerance(prm=1e-4, maps=1e-4, score=1e-4, mask_iou=1.0),
    # FP32 backends side by side (bench): other kernels, other summation orders.
    "fp32": Tolerance(prm=1e-3, maps=1e-3, score=1e-3, mask_iou=0.99),
    # FP16 islands vs the FP32 export (peaks must be identical: the peak sub-graph is FP32).
    # The prm rule's 1/|Z| amplifies FP16 rounding of the forward activations: a few % of
    # max|R| per peak measured on synthetic shapes.
    "fp16": Tolerance(prm=0.1, maps=0.1, score=0.05, mask_iou=0.85, agree=0.95),
    # INT8 Q/DQ ICN vs the FP32 export: maps move by a few quantisation steps, so instances
    # are judged as a set (class, score, mask IoU), not pixel by pixel.
    "int8": Tolerance(prm=1e-3, maps=0.6, score=0.1, mask_iou=0.8, agree=0.9),
}


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (0 when both are all zero, inf when only want is)."""
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def per_peak_err(got: np.ndarray, want: np.ndarray) -> float:
    """Worst per-map relative error over stacks [K, H, W]."""
    return max((rel_err(g, w) for g, w in zip(got, want, strict=True)), default=0.0)


def pair_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks; two empty masks are identical (1)."""
    if not a.any() and not b.any():
        return 1.0
    return float(mask_iou(a[None], b[None])[0, 0])


def stage_differences(ref: Stages, other: Stages, tol: Tolerance) -> list[str]:
    """Ways ``other``'s peaks and maps differ from ``ref``'s beyond ``tol``."""
    if len(ref.peaks) != len(other.peaks):
        return [f"{len(other.peaks)} peaks instead of {len(ref.peaks)}"]
    out = []
    if len(ref.peaks) and not np.array_equal(ref.peaks[:, :3].round(), other.peaks[:, :3].round()):
        out.append("different peak positions or classes")
    if len(ref.prm) and (err := rel_err(other.prm, ref.prm)) > tol.prm:
        out.append(f"PRM max abs error {err:.3g} x max|R| > {tol.prm:g}")
    if (ref.enhanced is None) != (other.enhanced is None):
        out.append("ICN maps present in one backend only")
    elif ref.enhanced is not None and len(ref.enhanced):
        err = float(np.abs(ref.enhanced - other.enhanced).max())
        if err > tol.maps:
            out.append(f"ICN map max abs error {err:.3g} > {tol.maps:g}")
    return out


def instance_differences(ref: Sequence[Instance], other: Sequence[Instance],
                         tol: Tolerance) -> list[str]:
    """Ways ``other``'s instances differ from ``ref``'s (count, order, class, score, mask)."""
    if len(ref) != len(other):
        return [f"{len(other)} instances instead of {len(ref)}"]
    out = []
    for i, (a, b) in enumerate(zip(ref, other, strict=True)):
        if a.class_name != b.class_name:
            out.append(f"instance {i}: class {b.class_name} instead of {a.class_name}")
        elif abs(a.score - b.score) > tol.score:
            out.append(f"instance {i}: score {b.score:.4f} instead of {a.score:.4f}")
        elif a.mask.shape != b.mask.shape:
            out.append(f"instance {i}: mask {b.mask.shape} instead of {a.mask.shape}")
        elif (iou := pair_iou(a.mask, b.mask)) < tol.mask_iou:
            out.append(f"instance {i}: mask differs (IoU {iou:.3f})")
    return out


def instance_agreement(ref: Sequence[Instance], other: Sequence[Instance],
                       tol: Tolerance) -> tuple[int, list[float]]:
    """(reference instances with a counterpart in ``other``, their IoUs): greedy one-to-one
    by IoU among same-class instances with scores within ``tol.score``."""
    used: set[int] = set()
    ious = []
    for a in ref:
        best, best_j = -1.0, -1
        for j, b in enumerate(other):
            if j in used or b.class_name != a.class_name or abs(a.score - b.score) > tol.score \
                    or b.mask.shape != a.mask.shape:
                continue
            if (iou := pair_iou(a.mask, b.mask)) > best:
                best, best_j = iou, j
        if best_j >= 0 and best >= tol.mask_iou:
            used.add(best_j)
            ious.append(best)
    return len(ious), ious


Result = tuple[list[Instance], Stages]


def compare_runs(results: Mapping[str, Sequence[Result]], reference: str,
                 image_names: Sequence[str], tol: Tolerance | Mapping[str, Tolerance]
                 ) -> list[str]:
    """Every difference of each run from ``reference``, image by image ("name vs ref on
    image: what"); ``tol`` may differ per run (e.g. by precision)."""
    problems = []
    for name, per_image in results.items():
        if name == reference:
            continue
        t = tol[name] if isinstance(tol, Mapping) else tol
        matched = total = 0
        for image, ref, got in zip(image_names, results[reference], per_image, strict=True):
            found = stage_differences(ref[1], got[1], t)
            if t.agree < 1.0:  # quantised: instances are judged over all images below
                n, _ = instance_agreement(ref[0], got[0], t)
                matched, total = matched + n, total + len(ref[0])
            else:
                found += instance_differences(ref[0], got[0], t)
            problems += [f"{name} vs {reference} on {image}: {p}" for p in found]
        if total and matched < t.agree * total:
            problems.append(f"{name} vs {reference}: {matched} of {total} instances agree "
                            f"(class, score within {t.score:g}, IoU >= {t.mask_iou:g}), "
                            f"fewer than {t.agree:.0%}")
    return problems
