"""Light ONNX clean-up after torch.onnx.export: fold constants, drop dead code, infer shapes.

Folding covers ``Constant`` nodes, ``Shape`` of statically shaped tensors and any node whose
inputs are all constant (evaluated with ``onnx.reference``), so shape bookkeeping such as
``ConstantOfShape`` disappears and the graph keeps to the TensorRT allow-list.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli"}
_MAX_FOLD_ELEMS = 1 << 16  # never materialise big tensors from shape ops


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Names -> fully static shapes, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out: dict[str, tuple[int, ...]] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    return out


def _evaluate(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: int) -> list:
    """Run one node on constant inputs with the ONNX reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(consts[n].dtype),
                                            consts[n].shape) for n in node.input if n]
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.output]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(m).run(None, {n: consts[n] for n in node.input if n})


def fold_constants(model: onnx.ModelProto) -> None:
    """Replace constant-valued nodes by initializers, in place."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes = _static_shapes(model)
    keep = []
    for node in graph.node:
        value = None
        if node.op_type == "Constant" and len(node.attribute) == 1 and \
                node.attribute[0].name == "value":
            value = [numpy_helper.to_array(node.attribute[0].t)]
        elif node.op_type == "Shape" and not node.attribute and node.input[0] in shapes:
            value = [np.asarray(shapes[node.input[0]], np.int64)]
        elif (node.op_type not in _NEVER_FOLD and node.domain in ("", "ai.onnx")
              and node.input and all(n in consts for n in node.input if n)):
            value = _evaluate(node, consts, opset)
            if any(np.asarray(v).size > _MAX_FOLD_ELEMS for v in value):
                value = None
        if value is None:
            keep.append(node)
            continue
        for name, v in zip(node.output, value, strict=True):
            consts[name] = np.asarray(v)
            graph.initializer.append(numpy_helper.from_array(np.asarray(v), name))
    del graph.node[:]
    graph.node.extend(keep)


def remove_dead(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nothing uses, then unused initializers."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def clean_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants, remove dead code, re-infer shapes; returns the cleaned model."""
    del model.graph.value_info[:]
    fold_constants(model)
    remove_dead(model)
    del model.graph.value_info[:]
    model.producer_name = "icnseg"
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
