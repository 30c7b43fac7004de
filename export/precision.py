"""FP32 graphs -> the typed graphs of an fp16 or int8 export, decided per graph by measurement.

FP16 (``export.fp16``): icn.onnx gets the rule's candidates minus those whose range on the
calibration images is unsafe; prm.onnx stays FP32 (its peaks must be identical).
INT8 (``export.int8``): icn.onnx is quantised; prm.onnx's forward convs are quantised only
if the peaks stay identical and the PRMs within tolerance on the calibration images (the
explicit backward, the 1/|Z| chain and the peak sub-graph stay FP32).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.compare import TOLERANCES, per_peak_err
from icnseg.export.calibrator import CalibrationSet
from icnseg.export.ort_cpu import cpu_session


def _prm_matches(path: Path, ref: list[dict[str, np.ndarray]], feeds: Sequence[dict],
                 prm_tol: float) -> bool:
    """True when ``path`` gives the reference peaks exactly and PRMs within ``prm_tol``."""
    session = cpu_session(path, "the precision check")
    for want, feed in zip(ref, feeds, strict=True):
        peaks, count, prm = session.run(["peaks", "count", "prm"], feed)
        n = int(count[0])
        if n != int(want["count"][0]) or not np.array_equal(peaks[:n, :3],
                                                            want["peaks"][:n, :3]):
            return False
        if n and per_peak_err(prm[:n], want["prm"][:n]) > prm_tol:
            return False
    return True


def _reference(path: Path, feeds: Sequence[dict]) -> list[dict[str, np.ndarray]]:
    """FP32 prm.onnx outputs on the calibration feeds."""
    session = cpu_session(path, "the precision check")
    names = ["peaks", "count", "prm"]
    return [dict(zip(names, session.run(names, f), strict=True)) for f in feeds]


def _save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def fp16_graphs(src: dict[str, Path], calib: CalibrationSet, work: Path) -> dict[str, Any]:
    """{role: (path, record)} of the FP16 export: icn.onnx with FP16 islands, prm.onnx FP32.

    prm.onnx stays FP32 by measurement: with its classifier forward in FP16 (CRM within ~1e-3
    of FP32) the peaks were identical on 32 calibration images but differed on 2 of 100 fresh
    ones (benchmarks/results/precision_cpu.md), and identical peaks are the FP16 contract.
    """
    import onnx

    from icnseg.export.fp16 import choose_fp16, convert_fp16, tensor_ranges

    out: dict[str, Any] = {"prm": (src["prm"], {
        "precision": "fp32", "kept_fp32": "peaks must be identical to FP32 (an FP16 forward "
        "moves the class maps by ~1e-3 and flips near-tied peaks)"})}
    if "icn" in src:
        model = onnx.load(str(src["icn"]))
        chosen = choose_fp16(model, "icn", tensor_ranges(model, calib.icn_feeds))
        dst = _save(convert_fp16(model, chosen), work / "icn.fp16.onnx")
        out["icn"] = (dst, {"precision": "fp16", "fp16_nodes": len(chosen),
                            "nodes": len(model.graph.node)})
    return out


def int8_graphs(src: dict[str, Path], calib: CalibrationSet, work: Path, method: str,
                activations: str) -> dict[str, Any]:
    """{role: (path, record)} of the INT8 export's graphs."""
    import onnx

    from icnseg.export.fp16 import ancestors
    from icnseg.export.int8 import quantize_int8

    out: dict[str, Any] = {}
    if "icn" in src:
        dst = work / "icn.int8.onnx"
        nodes = quantize_int8(src["icn"], dst, calib.icn_feeds, method, activations)
        out["icn"] = (dst, {"precision": "int8", "int8_nodes": len(nodes)})
    prm = onnx.load(str(src["prm"]))
    forward = ancestors(prm, "crm")
    convs = [n.name for n in prm.graph.node if n.op_type == "Conv" and n.name in forward]
    dst = work / "prm.int8.onnx"
    quantize_int8(src["prm"], dst, calib.prm_feeds, method, activations, nodes=convs)
    ref = _reference(src["prm"], calib.prm_feeds)
    if _prm_matches(dst, ref, calib.prm_feeds, TOLERANCES["int8"].prm):
        out["prm"] = (dst, {"precision": "int8", "int8_nodes": len(convs),
                            "kept_fp32": "explicit backward, 1/|Z| chain, peak sub-graph"})
    else:
        out["prm"] = (src["prm"], {"precision": "fp32", "int8_nodes": 0,
                                   "kept_fp32": "an INT8 forward changed the calibration "
                                   "images' peaks or PRMs"})
    return out
