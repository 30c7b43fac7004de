"""The op allow-list for TensorRT 10's ONNX parser and a checker for exported graphs."""

from __future__ import annotations

from collections import Counter

import onnx

from icnseg.errors import ExportError

# Ops the exported graphs may use: all are parsed natively by TensorRT 10 (onnx-tensorrt
# "Supported operators"). Deliberately absent: Loop, If, Scan, ScatterND/ScatterElements,
# NonZero, and every custom or ATen domain (DESIGN, "The explicit gradient graph").
TRT_ALLOWED_OPS: frozenset[str] = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "AveragePool", "BatchNormalization", "Cast", "Clip",
        "Concat", "Constant", "Conv", "ConvTranspose", "Div", "Equal", "Expand", "Flatten",
        "Floor", "Gather", "Gemm", "GlobalAveragePool", "Greater", "GreaterOrEqual", "Identity",
        "Less", "LessOrEqual", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Not", "Or", "Pad",
        "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu",
        "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Split", "Sqrt", "Squeeze", "Sub", "Sum",
        "TopK", "Transpose", "Unsqueeze", "Where",
    }
)
_DEFAULT_DOMAINS = ("", "ai.onnx")


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Return {op_type: count} over the main graph, most frequent first."""
    counts = Counter(node.op_type for node in model.graph.node)
    return dict(counts.most_common())


def check_trt_ops(model: onnx.ModelProto, allowed: frozenset[str] = TRT_ALLOWED_OPS) -> None:
    """Raise ExportError if ``model`` uses an op, domain or subgraph TensorRT 10 cannot parse."""
    problems: list[str] = []
    for node in model.graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in _DEFAULT_DOMAINS:
            problems.append(f"{where}: custom domain {node.domain!r}")
        elif node.op_type not in allowed:
            problems.append(f"{where}: op not in the TensorRT allow-list")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute):
            problems.append(f"{where}: has a subgraph")
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ExportError("graph is not TensorRT-compatible: " + "; ".join(problems[:5]) + more)
