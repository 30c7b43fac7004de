"""FP16 graphs with FP32 islands, chosen by rule and confirmed by measurement.

Rule (``fp16_candidates``): only the classifier's forward chain of prm.onnx (the ancestors of
``crm``: convs, folded BN, ReLU, max-pool) and the convolutional body of icn.onnx may run in
FP16 (``export.precision`` measured that prm.onnx's island moves peaks, so fp16 exports
keep prm.onnx FP32). Everything else keeps FP32: the prm rule's 1/|Z| chain and every
product it feeds (the whole explicit backward), the peak sub-graph (Gaussian, mean
threshold, max-pool equality, TopK, index arithmetic, seed construction) and the ICN's PRM
normalisation. Measurement
(``tensor_ranges``): a candidate whose inputs or outputs reach ``FP16_SAFE_MAX`` on the
calibration images stays FP32 too. ``convert_fp16`` is the project's own small pass over the
finished graph (FP16 initializers for the island, one Cast per tensor crossing a border;
inputs and outputs stay FP32). onnxconverter-common's float16 pass was tried first: its
node block list wraps every blocked node in FP16->FP32->FP16 casts, so FP32 "islands" still
round each tensor to FP16 between nodes (fatal for 1/|Z|), and it types graph outputs FP16.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FP16_MAX = 65504.0
FP16_SAFE_MAX = 8192.0  # headroom: FP16 sums and products of such values overflow soon after
# Ops of the convolutional bodies that FP16 may take (shape/index/reduction ops never).
FP16_OPS = {"Conv", "Relu", "MaxPool", "Mul", "Add", "Concat", "Resize", "Sigmoid",
            "BatchNormalization"}


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
    import onnx

    # icn: every op of FP16_OPS (its PRM min-max normalisation uses none of them)
    allowed = ancestors(model, "crm") if role == "prm" else {n.name for n in model.graph.node}
    typed = onnx.shape_inference.infer_shapes(model).graph
    floats = {v.name for v in [*typed.value_info, *typed.output, *typed.input]
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return [n.name for n in model.graph.node if n.name in allowed and n.op_type in FP16_OPS
            and all(o in floats for o in n.output)]


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


def convert_fp16(model, fp16_nodes: Sequence[str]):
    """A copy of ``model`` with ``fp16_nodes`` in FP16 and every other node in FP32: Casts at
    the island borders only, each FP32 tensor that enters an island cast once."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = type(model).FromString(model.SerializeToString())
    graph = model.graph
    island = [n for n in graph.node if n.name in set(fp16_nodes)]
    inside = {o for n in island for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    half: dict[str, str] = {}  # FP32 tensor -> its FP16 copy
    new_inits, casts_in = [], []
    for node in island:
        for j, t in enumerate(node.input):
            if not t or t in inside or (node.op_type == "Resize" and j > 0):
                continue  # Resize's roi/scales/sizes stay as they are
            if t not in half:
                half[t] = f"{t}.half"
                if t in inits:
                    arr = numpy_helper.to_array(inits[t])
                    h = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
                    new_inits.append(numpy_helper.from_array(h, half[t]))
                else:
                    casts_in.append(helper.make_node("Cast", [t], [half[t]],
                                                     to=TensorProto.FLOAT16,
                                                     name=f"n/{t}.to_half"))
            node.input[j] = half[t]
    # Island outputs read outside it (or graph outputs) get a Cast back under their own name.
    outside_reads = {t for n in graph.node if n.name not in set(fp16_nodes) for t in n.input}
    outside_reads |= {o.name for o in graph.output}
    casts_out = []
    for node in island:
        for j, t in enumerate(node.output):
            node.output[j] = f"{t}.h"
            for other in island:
                for k, u in enumerate(other.input):
                    if u == t:
                        other.input[k] = f"{t}.h"
            if t in outside_reads:
                casts_out.append(helper.make_node("Cast", [f"{t}.h"], [t],
                                                  to=TensorProto.FLOAT, name=f"n/{t}.to_float"))
    graph.initializer.extend(new_inits)
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(_toposort(nodes))
    del graph.value_info[:]  # ONNX Runtime infers the types again
    used = {t for n in graph.node for t in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def _toposort(nodes: list) -> list:
    """``nodes`` in an order where every tensor is produced before it is read."""
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output}
    order, state = [], [0] * len(nodes)  # 0 new, 1 visiting, 2 done

    def visit(i: int) -> None:
        stack = [(i, iter(nodes[i].input))]
        state[i] = 1
        while stack:
            j, it = stack[-1]
            for t in it:
                k = produced_by.get(t)
                if k is not None and state[k] == 0:
                    state[k] = 1
                    stack.append((k, iter(nodes[k].input)))
                    break
            else:
                stack.pop()
                state[j] = 2
                order.append(nodes[j])

    for i in range(len(nodes)):
        if state[i] == 0:
            visit(i)
    return order
