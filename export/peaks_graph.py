"""In-graph class scores (peak stimulation) and Eq. 1 peaks with TopK seeds, as ONNX ops.

Mirrors ``icnseg.models.prm`` (``class_scores``, ``find_peaks``); see the conventions in that
module's docstring. No ScatterND, no NonZero: fixed K_max rows and a valid count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from icnseg.errors import ExportError
from icnseg.export.adjoints import first_max_selection
from icnseg.export.graph import GraphBuilder


@dataclass(frozen=True)
class PeakOutputs:
    """ONNX names: class_scores [1,C], peaks [K,4], count [1], seeds [K,C,h,w], valid [K,1]."""

    class_scores: str
    peaks: str
    count: str
    seeds: str
    valid: str


def _lower_median(gb: GraphBuilder, x: str, n: int, axis: int, hint: str) -> str:
    """torch.median (lower median) of ``n`` values along ``axis``, keepdims: the max of the
    (n-1)//2+1 smallest (TopK). Note TensorRT's TopK caps k at 3840."""
    k = (n - 1) // 2 + 1
    vals, _ = gb.op("TopK", [x, gb.ints([k], "k")], hint, outputs=2, axis=axis, largest=0,
                    sorted=1)
    return gb.reduce("ReduceMax", vals, [axis], True, f"{hint}.median")


def class_scores_graph(gb: GraphBuilder, crm: str, c: int, h: int, w: int, window: int) -> str:
    """sigmoid(peak-stimulation score) [1,C] like ``prm.class_scores`` (upsample 1).

    A pixel counts if it is the first arg-max of its window (-inf padding, raster order)
    and >= the lower median of its map; the score is the mean of the counted values.
    """
    off = window // 2
    pooled = gb.op("MaxPool", [crm], "stim.pool", kernel_shape=[window, window], strides=[1, 1],
                   pads=[off] * 4)
    sel = first_max_selection(gb, crm, pooled, c, (h, w), (window, window), (1, 1),
                              (off, off), (1, 1), "stim")
    centre = off * window + off
    own = gb.slice(sel, [centre], [centre + 1], [2], hint="stim.own")
    own = gb.reshape(own, [1, c, h, w], "stim.own")
    flat = gb.reshape(crm, [1, c, h * w], "stim.flat")
    median = gb.unsqueeze(_lower_median(gb, flat, h * w, 2, "stim.median"), [3])
    keep = gb.cast_float(gb.op("GreaterOrEqual", [crm, median], "stim.ge"))
    mask = gb.op("Mul", [own, keep], "stim.mask")
    total = gb.reduce("ReduceSum", gb.op("Mul", [crm, mask]), [2, 3], False, "stim.sum")
    count = gb.reduce("ReduceSum", mask, [2, 3], False, "stim.count")
    count = gb.op("Max", [count, gb.const(np.float32(1.0))], "stim.count1")
    return gb.op("Sigmoid", [gb.op("Div", [total, count], "stim.score")], "class_scores")


def _median_filter(gb: GraphBuilder, crm: str, c: int, h: int, w: int, size: int) -> str:
    """Zero-padded size x size lower-median filter (as ``F.unfold`` + ``median``)."""
    r = size // 2
    padded = gb.op("Pad", [crm, gb.ints([0, 0, r, r, 0, 0, r, r], "pads")], "medf.pad")
    wins = [gb.unsqueeze(gb.slice(padded, [i, j], [i + h, j + w], [2, 3], hint="medf.win"), [2])
            for i in range(size) for j in range(size)]
    stack = gb.op("Concat", wins, "medf.wins", axis=2) if len(wins) > 1 else wins[0]
    med = _lower_median(gb, stack, size * size, 2, "medf")
    return gb.reshape(med, [1, c, h, w], "medf.out")


def peaks_graph(gb: GraphBuilder, crm: str, c: int, h: int, w: int, cfg, k_max: int,
                dynamic_k: bool = False) -> PeakOutputs:
    """Class scores, presence, Eq. 1 peak map, TopK(K_max) peaks, count and one-hot seeds
    ([K_max, ...], or with ``dynamic_k`` only the first ``count`` rows)."""
    n = c * h * w
    if k_max > n:
        raise ExportError(f"k_max={k_max} exceeds the {n} positions of the class response map")
    scores = class_scores_graph(gb, crm, c, h, w, cfg.window)
    present = gb.op("GreaterOrEqual", [scores, gb.const(np.float32(cfg.score_threshold))],
                    "present")
    present = gb.unsqueeze(present, [2, 3], "present.4d")  # bool [1,C,1,1]
    # Eq. 1: P = max(M - G(M) - mean(M), 0)
    if cfg.filter == "gaussian":
        from icnseg.models.prm import gaussian_kernel

        k = cfg.kernel_size
        kern = np.broadcast_to(gaussian_kernel(cfg.sigma, k), (c, 1, k, k)).copy()
        smooth = gb.op("Conv", [crm, gb.const(kern, "gauss.kernel")], "gauss", group=c,
                       kernel_shape=[k, k], pads=[k // 2] * 4)
    else:
        smooth = _median_filter(gb, crm, c, h, w, cfg.median_size)
    mean = gb.reduce("ReduceMean", crm, [2, 3], True, "eta")
    p = gb.op("Relu", [gb.op("Sub", [gb.op("Sub", [crm, smooth], "m_g"), mean], "m_g_e")], "P")
    win = cfg.window
    local = gb.op("MaxPool", [p], "P.pool", kernel_shape=[win, win], strides=[1, 1],
                  pads=[win // 2] * 4)
    is_peak = gb.op("And", [gb.op("Equal", [p, local], "P.eq"),
                            gb.op("Greater", [p, gb.const(np.float32(0))], "P.pos")], "P.peak")
    is_peak = gb.op("And", [is_peak, present], "P.peak_present")
    # Options beyond Eq. 1 (PeakConfig.min_response / relative), as in prm.find_peaks.
    min_response = getattr(cfg, "min_response", None)
    if min_response is not None:
        strong = gb.op("GreaterOrEqual", [crm, gb.const(np.float32(min_response))], "P.strong")
        is_peak = gb.op("And", [is_peak, strong], "P.peak_strong")
    relative = float(getattr(cfg, "relative", 0.0))
    if relative > 0:
        masked = gb.op("Mul", [p, gb.cast_float(is_peak, "P.peak_f")], "P.masked")
        best = gb.reduce("ReduceMax", masked, [2, 3], True, "P.best")
        floor = gb.op("Mul", [best, gb.const(np.float32(relative))], "P.floor")
        is_peak = gb.op("And", [is_peak, gb.op("GreaterOrEqual", [p, floor], "P.rel")],
                        "P.peak_rel")
    # peak value where a peak, -1 elsewhere (P > 0 at peaks, so peaks outrank the rest)
    ranked = gb.op("Where", [is_peak, p, gb.const(np.float32(-1))], "P.ranked")
    flat = gb.reshape(ranked, [1, n], "P.flat")
    vals, idx = gb.op("TopK", [flat, gb.ints([k_max], "k")], "topk", outputs=2, axis=1,
                      largest=1, sorted=1)
    vals = gb.reshape(vals, [k_max, 1], "topk.vals")
    valid = gb.cast_float(gb.op("Greater", [vals, gb.const(np.float32(0))]), "valid")
    count = gb.reduce("ReduceSum", valid, [0, 1], False, "count.f")
    count = gb.op("Cast", [gb.reshape(count, [1])], "count", to=TensorProto.INT64)
    # index arithmetic in float32: exact for n < 2**24
    idxf = gb.reshape(gb.cast_float(idx, "topk.idxf"), [k_max, 1], "topk.idx")
    row = gb.op("Floor", [gb.op("Div", [idxf, gb.const(np.float32(w))])], "peak.row")  # c*h + y
    cls = gb.op("Floor", [gb.op("Div", [row, gb.const(np.float32(h))])], "peak.class")
    y = gb.op("Sub", [row, gb.op("Mul", [cls, gb.const(np.float32(h))])], "peak.y")
    x = gb.op("Sub", [idxf, gb.op("Mul", [row, gb.const(np.float32(w))])], "peak.x")
    rows = gb.op("Concat", [cls, y, x, vals], "peak.rows", axis=1)
    peaks = gb.op("Mul", [rows, valid], "peaks")
    rng = gb.op("Range", [gb.const(np.float32(0)), gb.const(np.float32(n)),
                          gb.const(np.float32(1))], "flat_index")
    onehot = gb.cast_float(gb.op("Equal", [idxf, rng], "seed.eq"), "seed.onehot")  # [K,n]
    seeds = gb.reshape(gb.op("Mul", [onehot, valid], "seed.valid"), [k_max, c, h, w], "seeds")
    if dynamic_k:
        # valid peaks come first (TopK is sorted, invalid rows rank -1), so the backward can
        # stop at count: its cost follows the image's peaks, not K_max
        seeds = gb.op("Slice", [seeds, gb.ints([0], "seed.start"), count,
                                gb.ints([0], "seed.axis")], "seeds.valid")
    return PeakOutputs(scores, peaks, count, seeds, valid)
