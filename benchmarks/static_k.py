"""A ``--dynamic-k`` prm.onnx with its data-dependent K fixed, so FLOPs can be counted."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper

from icnseg.errors import InputError


def is_dynamic_k(model: onnx.ModelProto) -> bool:
    """True for a prm graph exported with ``--dynamic-k``."""
    meta = {p.key: p.value for p in model.metadata_props}
    return meta.get("icnseg.dynamic_k") == "true"


def with_fixed_k(src: str | os.PathLike | onnx.ModelProto, k: int) -> onnx.ModelProto:
    """A copy whose backward runs exactly ``k`` rows (the Slice ends at ``k``, not ``count``)."""
    model = onnx.load(str(src)) if not isinstance(src, onnx.ModelProto) else src
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if not is_dynamic_k(model):
        return model
    nodes = list(model.graph.node)
    count = "count"
    producer = {o: n for n in nodes for o in n.output}
    while count in producer and producer[count].op_type == "Identity":
        count = producer[count].input[0]
    cut = [n for n in nodes if n.op_type == "Slice" and len(n.input) > 2 and n.input[2] == count]
    if len(cut) != 1:
        raise InputError(f"{getattr(src, 'name', src)}: expected one Slice ending at the peak "
                         f"count, found {len(cut)}")
    name = "icnseg.fixed_k"
    model.graph.initializer.append(numpy_helper.from_array(np.asarray([k], np.int64), name))
    cut[0].input[2] = name
    return model
