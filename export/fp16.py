"""FP16 graphs with FP32 islands, chosen by rule and confirmed by measurement.

Rule (``fp16_candidates``): only the classifier's forward chain of prm.onnx (the ancestors of
``crm``: convs, folded BN, ReLU, max-pool) and the convolutional body of icn.onnx may run in
FP16. Everything else keeps FP32: the prm rule's 1/|Z| chain and every product it feeds (the
whole explicit backward), the peak sub-graph (Gaussian, mean threshold, max-pool equality,
TopK, index arithmetic, seed construction) and the ICN's PRM normalisation. Measurement
(``tensor_ranges``): a candidate whose inputs or outputs reach ``FP16_SAFE_MAX`` on the
calibration images stays FP32 too. The conversion is onnxconverter-common's float16 pass with
that node block list (inputs/outputs stay FP32; it inserts the casts at island borders):
a maintained converter, so the graph builders stay single-precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from icnseg.errors import BackendUnavailable

FP16_MAX = 65504.0
FP16_SAFE_MAX = 8192.0  # headroom: FP16 sums and products of such values overflow soon after
# Ops of the convolutional bodies that FP16 may take (shape/index/reduction ops never).
FP16_OPS = {"Conv", "Relu", "MaxPool", "Mul", "Add", "Concat", "Resize", "Sigmoid",
            "BatchNormalization"}


def _converter():
    """onnxconverter-common's float16 module, or say how to install it."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise BackendUnavailable("--precision fp16 needs onnxconverter-common: "
                                 "pip install 'icnseg[train]'") from exc
    return float16


def ancestors(model, output: str) -> set[str]:
    """Names of the nodes ``output`` depends on."""
    producer = {o: n for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    todo = [output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(node.input)
    return seen


def fp16_candidates(model, role: str) -> list[str]:
    """Nodes the rule lets run in FP16 (before the range measurement)."""
    # icn: every op of FP16_OPS (its PRM min-max normalisation uses none of them)
    allowed = ancestors(model, "crm") if role == "prm" else {n.name for n in model.graph.node}
    return [n.name for n in model.graph.node if n.name in allowed and n.op_type in FP16_OPS]


def tensor_ranges(model, feeds: Iterable[dict]) -> dict[str, float]:
    """max |value| of every float tensor of ``model`` over ``feeds`` (FP32, ONNX Runtime)."""
    import onnx

    from icnseg.export.ort_cpu import cpu_session

    probe = onnx.shape_inference.infer_shapes(model)
    outputs = {o.name for o in probe.graph.output}
    for vi in probe.graph.value_info:
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in outputs:
            probe.graph.output.append(vi)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="icnseg-fp16-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(path))
        session = cpu_session(path, "FP16 range measurement")
        names = [o.name for o in session.get_outputs()]
        ranges = dict.fromkeys(names, 0.0)
        for feed in feeds:
            for name, value in zip(names, session.run(names, feed), strict=True):
                if value.size and np.issubdtype(value.dtype, np.floating):
                    ranges[name] = max(ranges[name], float(np.abs(value).max()))
    for init in model.graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        if arr.size and np.issubdtype(arr.dtype, np.floating):
            ranges[init.name] = float(np.abs(arr).max())
    return ranges


def choose_fp16(model, role: str, ranges: dict[str, float],
                exclude: Sequence[str] = ()) -> list[str]:
    """The rule's candidates whose every float input and output stays below FP16_SAFE_MAX."""
    nodes = {n.name: n for n in model.graph.node}
    out = []
    for name in fp16_candidates(model, role):
        node = nodes[name]
        if name in exclude:
            continue
        if all(ranges.get(t, 0.0) < FP16_SAFE_MAX for t in [*node.input, *node.output] if t):
            out.append(name)
    return out


def _unshare_initializers(model, fp16_nodes: set[str]) -> None:
    """Give FP16 nodes their own copy of initializers FP32 nodes also read (e.g. a folded BN
    scale the explicit backward multiplies by): the converter leaves shared ones FP32."""
    users: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for t in node.input:
            users.setdefault(t, set()).add(node.name in fp16_nodes)
    shared = {i.name: i for i in model.graph.initializer if users.get(i.name) == {True, False}}
    for name, init in shared.items():
        copy = model.graph.initializer.add()
        copy.CopyFrom(init)
        copy.name = f"{name}.fp16"
    for node in model.graph.node:
        if node.name in fp16_nodes:
            for j, t in enumerate(node.input):
                if t in shared:
                    node.input[j] = f"{t}.fp16"


def _separate_outputs(model) -> None:
    """Graph outputs that nodes also read get an Identity of their own (the converter's
    keep_io_types casts would otherwise retype what those nodes read)."""
    import onnx

    outputs = {o.name for o in model.graph.output}
    read = {t for n in model.graph.node for t in n.input}
    for name in sorted(outputs & read):
        inner = f"{name}.inner"
        for node in model.graph.node:
            for seq in (node.input, node.output):
                for j, t in enumerate(seq):
                    if t == name:
                        seq[j] = inner
        model.graph.node.append(onnx.helper.make_node("Identity", [inner], [name],
                                                      name=f"n/{name}.out"))


def convert_fp16(model, fp16_nodes: Sequence[str]):
    """A copy of ``model`` with ``fp16_nodes`` in FP16 and every other node in FP32."""
    float16 = _converter()
    keep = set(fp16_nodes)
    model = type(model).FromString(model.SerializeToString())
    _unshare_initializers(model, keep)
    _separate_outputs(model)
    blocked = [n.name for n in model.graph.node if n.name not in keep]
    return float16.convert_float_to_float16(model, max_finite_val=FP16_MAX, keep_io_types=True,
                                            node_block_list=blocked)
