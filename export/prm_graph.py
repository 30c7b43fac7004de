"""prm.onnx: classifier forward, in-graph peaks and the explicit batched backward to the image."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import onnx
import torch
from onnx import TensorProto
from torch import nn

from icnseg.errors import ExportError
from icnseg.export.backward import emit_backward, emit_forward
from icnseg.export.graph import GraphBuilder
from icnseg.export.opset import check_trt_ops
from icnseg.export.peaks_graph import peaks_graph
from icnseg.export.trace import trace_module
from icnseg.settings import RULES

PRM_INPUTS = ("image",)
PRM_OUTPUTS = ("crm", "class_scores", "peaks", "count", "prm")


def build_prm_onnx(classifier: nn.Module, peak_cfg, input_size: tuple[int, int], k_max: int,
                   rule: str = "gradient", mean: Sequence[float] = (0.485, 0.456, 0.406),
                   std: Sequence[float] = (0.229, 0.224, 0.225), opset: int = 17,
                   dynamic_k: bool = False) -> onnx.ModelProto:
    """Export ``classifier`` to prm.onnx: image [1,3,H,W] (normalised) -> crm [1,C,h,w],
    class_scores [1,C], peaks [K_max,4] (class,y,x,value), count int64 [1], prm [K_max,H,W].

    Rows of ``peaks``/``prm`` at or beyond ``count`` are zero. With ``dynamic_k`` the backward
    and ``prm`` have only ``count`` rows (a data-dependent shape: ONNX Runtime runs it, the
    TensorRT backend does not). ``mean``/``std`` are recorded in the metadata only: the graph
    takes the already-normalised image, like the classifier.
    """
    if rule not in RULES:
        raise ExportError(f"unknown backward rule {rule!r}; choose one of {', '.join(RULES)}")
    if k_max < 1:
        raise ExportError(f"k_max must be >= 1, got {k_max}")
    hh, ww = (int(v) for v in input_size)
    was_training = classifier.training
    try:
        tg = trace_module(classifier, torch.zeros(1, 3, hh, ww))
    finally:
        classifier.train(was_training)
    _, c, h, w = tg.output_shape
    gb = GraphBuilder(opset)
    image = gb.add_input("image", [1, 3, hh, ww])
    fwd = emit_forward(gb, tg, image, rule)
    crm = fwd.values[tg.output]
    peaks = peaks_graph(gb, crm, c, h, w, peak_cfg, k_max, dynamic_k)
    grad = emit_backward(gb, tg, fwd, peaks.seeds, rule)
    colour = gb.reduce("ReduceSum", grad, [1], False, "prm.sum")
    prm = gb.op("Relu", [colour], "prm.clamp")
    gb.add_output(crm, "crm", [1, c, h, w])
    gb.add_output(peaks.class_scores, "class_scores", [1, c])
    gb.add_output(peaks.peaks, "peaks", [k_max, 4])
    gb.add_output(peaks.count, "count", [1], TensorProto.INT64)
    gb.add_output(prm, "prm", ["K" if dynamic_k else k_max, hh, ww])
    meta = {
        "icnseg.graph": "prm",
        "icnseg.rule": rule,
        "icnseg.k_max": str(k_max),
        "icnseg.dynamic_k": str(bool(dynamic_k)).lower(),
        "icnseg.input_size": json.dumps([hh, ww]),
        "icnseg.num_classes": str(c),
        "icnseg.crm_size": json.dumps([h, w]),
        "icnseg.mean": json.dumps([float(v) for v in mean]),
        "icnseg.std": json.dumps([float(v) for v in std]),
        "icnseg.peak_config": json.dumps(_cfg_dict(peak_cfg), sort_keys=True),
    }
    model = gb.model("icnseg_prm", meta)
    check_trt_ops(model)
    return model


def _cfg_dict(cfg) -> dict:
    """A peak config as a plain dict (dataclass or mapping)."""
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(vars(cfg))
