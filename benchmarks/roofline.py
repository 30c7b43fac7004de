"""Roofline: FLOPs and bytes per stage from the ONNX graphs, and the fraction of a GPU's peak.

Counted per node on ONNX-inferred shapes at concrete input sizes; a multiply-add is 2 FLOPs.
Conv 2|Y|(Cin/group)prod(kernel), ConvTranspose 2|X|(Cout/group)prod(kernel) (+|Y| with a bias;
all taps count, padding included); MatMul 2|Y|K; Gemm 2MNK (+MN with C). Elementwise (Add, Mul,
Relu, Sigmoid, Where, Clip, comparisons, logic, ...) 1 per output element, transcendentals too;
Sum/Max/Min n-1, Mean n. Reductions, ArgMax/Min, global pools: 1 per input element. Max/Average
pool: prod(kernel) per output. Resize per output: 0 nearest, 2*2^r linear, 2*4^r cubic (r
resized axes). TopK: |X|*ceil(log2 k) (heap selection). Softmax 4, BatchNormalization 2 per
element. Data movement (Slice, Concat, Split, Transpose, Gather, Cast, Pad, Expand, ...): 0.
Bytes: distinct inputs read (initializers too) + outputs written at their element size
(``float_bytes`` overrides float32: 2 for an FP16 engine); Slice/Gather read only what they
select, Shape/Size nothing; Reshape/Squeeze/Unsqueeze/Flatten/Identity/Dropout/Constant are free.
A fusing engine (TensorRT) moves fewer bytes than this unfused graph. Other ops: 0 FLOPs, status
"unknown_op" (listed, never an error).

Stages: icn.onnx is "icn". prm.onnx names no stages, so the rule is topological: "peaks" = nodes
downstream of the crm tensor, "prm_backward" = nodes downstream of the seeds (the first [K,C,h,w]
tensor below crm that no peak output depends on), "prm_forward" = the rest, including the batch-1
state the backward reuses (ReLU masks, max-pool selections, PRM-rule Z convs). Constant-only
nodes join their consumer's stage, an output Identity its producer's. A --dynamic-k prm graph is
counted with its backward at K rows (input_shapes "K", default K_max).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from icnseg.benchmarks.gpus import GPUS, GpuSpec, find_gpu  # noqa: F401 (re-exported)
from icnseg.benchmarks.static_k import is_dynamic_k, with_fixed_k
from icnseg.errors import ConfigError, InputError

GRAPH_STAGES = ("prm_forward", "peaks", "prm_backward", "icn")  # split of the ONNX graphs
ELEMENTWISE = frozenset(str.split(
    "Add Sub Mul Div Pow Mod PRelu Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Not "
    "BitShift Where Relu Sigmoid Tanh Abs Neg Reciprocal Sqrt Exp Log Floor Ceil Round Sign Erf "
    "Clip LeakyRelu Elu Selu Celu HardSigmoid HardSwish Softplus Softsign ThresholdedRelu Gelu "
    "Mish IsNaN IsInf Sin Cos"))
REDUCE = frozenset(str.split("ReduceMean ReduceMin ReduceMax ReduceSum ReduceProd ReduceL1 "
                             "ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax "
                             "ArgMin GlobalAveragePool GlobalMaxPool"))
MOVE = frozenset(str.split(
    "Slice Concat Split Transpose Gather GatherElements GatherND ScatterND ScatterElements Cast "
    "CastLike Pad Expand Tile Range Shape Size ConstantOfShape DepthToSpace SpaceToDepth OneHot "
    "NonZero Trilu Compress ReverseSequence EyeLike"))
FREE = frozenset(("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Constant"))
PER_ELEMENT = {"Softmax": 4, "LogSoftmax": 4, "BatchNormalization": 2}
COUNTED = ELEMENTWISE | REDUCE | MOVE | FREE | set(PER_ELEMENT) | set(str.split(
    "Sum Max Min Mean Conv ConvTranspose MatMul Gemm MaxPool AveragePool Resize TopK"))
_FOLD_LIMIT = 1 << 16  # fold shape arithmetic on tensors up to this many elements
_ITEMSIZE = {t: np.dtype(helper.tensor_dtype_to_np_dtype(t)).itemsize
             for t in onnx.TensorProto.DataType.values() if t}
Shapes = dict[str, tuple[int, ...] | None]
Source = str | Path | onnx.ModelProto
InputShapes = Mapping[str, int | Sequence[int]]  # input name -> shape, or dim name -> size


@dataclass(frozen=True)
class NodeCost:
    """One node's FLOPs and bytes; status is "ok", "unknown_op" or "unknown_shape"."""

    index: int
    name: str
    op_type: str
    flops: int
    bytes: int
    stage: str
    status: str = "ok"


@dataclass(frozen=True)
class StageCost:
    """A stage's FLOPs, bytes, intensity (FLOP/byte), node count and uncounted op types."""

    flops: int
    bytes: int
    intensity: float
    nodes: int
    uncounted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RooflinePoint:
    """One timed stage: achieved rates; fractions of peak and the bound are None off-table."""

    stage: str
    seconds: float
    intensity: float
    flops_per_s: float
    bytes_per_s: float
    device: str
    precision: str
    compute_fraction: float | None = None
    bandwidth_fraction: float | None = None
    bound: str | None = None
    attainable_flops_per_s: float | None = None
    roof_fraction: float | None = None


def _load(src: Source) -> tuple[onnx.ModelProto, str]:
    """A private copy of the model and a label for messages (the file name)."""
    if isinstance(src, onnx.ModelProto):
        return copy.deepcopy(src), src.graph.name or "<model>"
    try:
        return onnx.load(str(src)), str(src)
    except Exception as exc:  # noqa: BLE001 - missing file or protobuf decode errors
        raise InputError(f"{src}: not a readable ONNX model ({type(exc).__name__})") from exc


def _fix_inputs(model: onnx.ModelProto, label: str, given: InputShapes) -> None:
    """Make every graph input concrete: ``given`` maps an input name to its full shape or a
    symbolic dim ("K", "H", "W") to a size; icnseg metadata gives K = k_max and H/W."""
    meta = {p.key: p.value for p in model.metadata_props}
    dims = dict(zip("KHW", [int(meta.get("icnseg.k_max", 0)),
                            *json.loads(meta.get("icnseg.input_size", "[0, 0]"))], strict=True))
    inits = {t.name for t in model.graph.initializer}
    inputs = {i.name: i.type.tensor_type.shape for i in model.graph.input if i.name not in inits}
    params = {d.dim_param for s in inputs.values() for d in s.dim}
    for key, value in given.items():
        if key not in (inputs if isinstance(value, Sequence) else params):
            raise InputError(f"{label}: no graph input or symbolic dimension {key!r}")
    dims.update({k: int(v) for k, v in given.items() if not isinstance(v, Sequence)})
    for name, shape in inputs.items():
        values = given.get(name)
        if not isinstance(values, Sequence):
            values = [d.dim_value or dims.get(d.dim_param, 0) for d in shape.dim]
        if len(values) != len(shape.dim) or min(values, default=1) < 1:
            raise InputError(f"{label}: input {name!r} needs {len(shape.dim)} positive sizes, "
                             f"got {list(values)} (set them in input_shapes)")
        for d, v in zip(shape.dim, values, strict=True):
            d.Clear()
            d.dim_value = int(v)


def _fold(model: onnx.ModelProto, consts: dict[str, np.ndarray], shapes: Shapes) -> bool:
    """Add the values of constant shape arithmetic (Shape -> Gather -> ... -> Expand, which
    ONNX shape inference cannot see through) to ``consts``; True if any were new."""
    new = False
    for node in model.graph.node:
        ins = [i for i in node.input if i]
        if all(o in consts for o in node.output) or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Shape" and shapes.get(ins[0]) is not None:
            at = {a.name: a.i for a in node.attribute}
            values = [np.asarray(shapes[ins[0]], np.int64)[at.get("start", 0):at.get("end")]]
        elif node.op_type == "Constant" or (ins and all(i in consts for i in ins)):
            feeds = {i: consts[i] for i in ins}
            vi = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(a.dtype), None)
                  for i, a in feeds.items()]
            out = [helper.make_tensor_value_info(o, 0, None) for o in node.output]
            try:
                sub = helper.make_model(helper.make_graph([node], "fold", vi, out),
                                        opset_imports=list(model.opset_import))
                values = list(ReferenceEvaluator(sub).run(None, feeds))
            except Exception:  # noqa: BLE001 - not foldable: leave it to shape inference
                continue
        else:
            continue
        if all(np.asarray(v).size <= _FOLD_LIMIT for v in values):
            consts.update({o: np.asarray(v) for o, v in zip(node.output, values, strict=False)})
            new = True
    return new


def _infer(model: onnx.ModelProto, label: str) -> tuple[Shapes, dict[str, int]]:
    """Shapes (None when unknown) and element types of every tensor."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
              if math.prod(t.dims) <= _FOLD_LIMIT}
    work = model
    for _ in range(4):
        try:
            g = shape_inference.infer_shapes(work, data_prop=True).graph
        except Exception as exc:  # noqa: BLE001 - inference errors have many types
            raise InputError(f"{label}: ONNX shape inference failed: {exc}") from exc
        shapes: Shapes = {t.name: tuple(t.dims) for t in g.initializer}
        elems = {t.name: t.data_type for t in g.initializer}
        for v in [*g.input, *g.output, *g.value_info]:
            tt = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            known = tt.HasField("shape") and min(dims, default=0) >= 0
            shapes[v.name], elems[v.name] = (dims if known else None), tt.elem_type
        for name, arr in consts.items():
            shapes[name], elems[name] = arr.shape, helper.np_dtype_to_tensor_dtype(arr.dtype)
        if not _fold(model, consts, shapes):
            break
        work = copy.deepcopy(model)  # folded nodes become initializers; infer again
        for n in (gone := [n for n in work.graph.node if all(o in consts for o in n.output)]):
            work.graph.node.remove(n)
        work.graph.initializer.extend(numpy_helper.from_array(consts[o], o) for n in gone
                                      for o in n.output)
    return shapes, elems


def _flops(node: onnx.NodeProto, ins: list[str], out: int, sh: Shapes) -> int:
    """FLOPs of a counted op (module docstring conventions); ``out`` = |first output|."""
    op, attrs = node.op_type, {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bias = out if len(ins) > 2 else 0
    if op == "Conv":  # W [Cout, Cin/g, k...]
        return 2 * out * sh[ins[1]][1] * math.prod(sh[ins[1]][2:]) + bias
    if op == "ConvTranspose":  # W [Cin, Cout/g, k...]: each input element scatters a kernel
        return 2 * math.prod(sh[ins[0]]) * sh[ins[1]][1] * math.prod(sh[ins[1]][2:]) + bias
    if op in ("MatMul", "Gemm"):  # K = A's last dim (first with Gemm's transA)
        return 2 * out * sh[ins[0]][0 if attrs.get("transA") else -1] + bias
    if op in ("Sum", "Max", "Min", "Mean"):
        return out * (len(ins) - (op != "Mean"))
    if op in REDUCE:
        return math.prod(sh[ins[0]])
    if op in ("MaxPool", "AveragePool"):
        return out * math.prod(attrs["kernel_shape"])
    if op == "Resize":
        mode = attrs.get("mode", b"nearest").decode()
        r = sum(a != b for a, b in zip(sh[ins[0]], sh[node.output[0]], strict=True))
        return 0 if mode == "nearest" or r == 0 else 2 * out * (4 if mode == "cubic" else 2) ** r
    if op == "TopK":
        k = sh[node.output[0]][attrs.get("axis", -1)]
        return math.prod(sh[ins[0]]) * max(1, math.ceil(math.log2(max(k, 1))))
    return out * PER_ELEMENT.get(op, 1) if op in ELEMENTWISE or op in PER_ELEMENT else 0


def _node_cost(i: int, node: onnx.NodeProto, stage: str, shapes: Shapes,
               elems: Mapping[str, int], float_bytes: int | None) -> NodeCost:
    """FLOPs and bytes of one node."""
    op, name = node.op_type, node.name or f"{node.op_type}_{i}"
    known = op in COUNTED and node.domain in ("", "ai.onnx")
    if known and op in FREE:
        return NodeCost(i, name, op, 0, 0, stage)
    ins, outs = [t for t in node.input if t], [t for t in node.output if t]
    moved = ([] if op in ("Shape", "Size") else list(dict.fromkeys(ins))) + outs
    size = {t: math.prod(shapes[t]) for t in moved if shapes.get(t) is not None}
    if op in ("Slice", "Gather", "GatherElements", "GatherND") and outs[0] in size:
        size[ins[0]] = size[outs[0]]  # reads only the selected elements
    total = sum(n * (float_bytes if float_bytes and elems.get(t) == onnx.TensorProto.FLOAT
                     else _ITEMSIZE.get(elems.get(t, 0), 0)) for t, n in size.items())
    if not known or len(size) < len(set(moved)) or any(shapes.get(t) is None for t in ins):
        return NodeCost(i, name, op, 0, total, stage, "unknown_shape" if known else "unknown_op")
    return NodeCost(i, name, op, _flops(node, ins, size[outs[0]], shapes), total, stage)


def _below(nodes: Sequence[onnx.NodeProto], tensors: Sequence[str]) -> set[int]:
    """Indices of the nodes downstream of ``tensors`` (ONNX nodes are topologically sorted)."""
    marked, hit = set(tensors), set()
    for i, n in enumerate(nodes):
        if marked.intersection(n.input):
            hit.add(i)
            marked.update(n.output)
    return hit


def _stages(model: onnx.ModelProto, label: str, shapes: Shapes) -> list[str]:
    """The stage of every node (the module docstring's rule)."""
    nodes, outputs = list(model.graph.node), {o.name for o in model.graph.output}
    if not {"crm", "prm", "peaks", "class_scores", "count"} <= outputs:
        meta = {p.key: p.value for p in model.metadata_props}
        return [meta.get("icnseg.graph", "graph")] * len(nodes)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    crm = "crm"
    while crm in producer and nodes[producer[crm]].op_type == "Identity":
        crm = nodes[producer[crm]].input[0]
    need, above = {"class_scores", "peaks", "count"}, set()
    for i in reversed(range(len(nodes))):  # the nodes the peak outputs depend on
        if need.intersection(nodes[i].output):
            above.add(i)
            need.update(nodes[i].input)
    want = (*(shapes.get("prm") or (-1,))[:1], *(shapes.get(crm) or ())[1:])  # [K,C,h,w]
    peaks = _below(nodes, [crm])
    seeds = next((o for j in sorted(peaks - above) for o in nodes[j].output
                  if shapes.get(o) == want), None)
    if seeds is None:
        raise InputError(f"{label}: no seeds tensor {list(want)} below {crm!r}")
    back, live = _below(nodes, [seeds]), _below(nodes, [i.name for i in model.graph.input])
    stage = ["prm_backward" if i in back else "peaks" if i in peaks else "prm_forward"
             for i in range(len(nodes))]
    for i in reversed(range(len(nodes))):  # constant-only nodes join their first consumer
        used = [] if i in live else [j for j in range(i + 1, len(nodes))
                                     if set(nodes[j].input) & set(nodes[i].output)]
        stage[i] = stage[used[0]] if used else stage[i]
    for i, n in enumerate(nodes):  # an output Identity joins its producer
        if n.op_type == "Identity" and n.output[0] in outputs and n.input[0] in producer:
            stage[i] = stage[producer[n.input[0]]]
    return stage


def graph_costs(onnx_path_or_model: Source, input_shapes: InputShapes | None = None,
                *, float_bytes: int | None = None) -> list[NodeCost]:
    """Per-node FLOPs, bytes and stage in graph order; ``input_shapes`` maps an input name to
    its shape or a symbolic dim ("K", "H", "W") to a size (defaults: the icnseg metadata)."""
    model, label = _load(onnx_path_or_model)
    given = dict(input_shapes or {})
    if is_dynamic_k(model):
        k_max = next(p.value for p in model.metadata_props if p.key == "icnseg.k_max")
        model = with_fixed_k(model, int(given.pop("K", 0) or k_max))
    _fix_inputs(model, label, given)
    shapes, elems = _infer(model, label)
    stages = _stages(model, label, shapes)
    return [_node_cost(i, n, stages[i], shapes, elems, float_bytes)
            for i, n in enumerate(model.graph.node)]


def stage_costs(onnx_path_or_model: Source, input_shapes: InputShapes | None = None,
                *, float_bytes: int | None = None) -> dict[str, StageCost]:
    """FLOPs, bytes and intensity (FLOP/byte) per stage of one graph."""
    costs, out = graph_costs(onnx_path_or_model, input_shapes, float_bytes=float_bytes), {}
    for stage in sorted({c.stage for c in costs}, key=lambda s: (*GRAPH_STAGES, s).index(s)):
        group = [c for c in costs if c.stage == stage]
        flops, nbytes = sum(c.flops for c in group), sum(c.bytes for c in group)
        out[stage] = StageCost(flops, nbytes, flops / nbytes if nbytes else 0.0, len(group),
                               tuple(sorted({c.op_type for c in group if c.status != "ok"})))
    return out


def export_stage_costs(export_dir: str | Path, k: int | None = None, *,
                       float_bytes: int | None = None) -> dict[str, StageCost]:
    """Stage costs of an export's prm.onnx (its fixed K_max) and icn.onnx (K = k or k_max)."""
    return {**stage_costs(Path(export_dir) / "prm.onnx", float_bytes=float_bytes),
            **stage_costs(Path(export_dir) / "icn.onnx", {"K": k} if k else None,
                          float_bytes=float_bytes)}


def combine(stages: Mapping[str, StageCost], *names: str) -> StageCost:
    """One cost for several stages, e.g. the whole prm.onnx that a runtime times as "prm"."""
    parts = [stages[n] for n in names]
    flops, nbytes = sum(p.flops for p in parts), sum(p.bytes for p in parts)
    return StageCost(flops, nbytes, flops / nbytes if nbytes else 0.0, sum(p.nodes for p in parts),
                     tuple(sorted({u for p in parts for u in p.uncounted})))


def roofline(stages: Mapping[str, StageCost], seconds: Mapping[str, float],
             device: GpuSpec | str | None = None, precision: str = "fp32") -> list[RooflinePoint]:
    """Achieved FLOP/s and bytes/s of each timed stage and, on a GPU of the table, fractions
    of peak compute (``precision`` fp32, or fp16 tensor cores), of peak bandwidth and of the
    attainable roof min(peak, intensity x bandwidth). A CPU or unknown device: rates only."""
    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"precision must be fp32 or fp16, got {precision!r}")
    spec = find_gpu(device) if isinstance(device, str) else device
    points = []
    for stage, sec in seconds.items():
        if stage not in stages or not sec > 0:
            raise ConfigError(f"stage {stage!r}: no costs, or seconds {sec} not > 0")
        c, extra = stages[stage], ()
        fps, bps = c.flops / sec, c.bytes / sec
        if spec is not None:
            peak = (spec.fp32_tflops if precision == "fp32" else spec.fp16_tflops) * 1e12
            bw = spec.bandwidth_gbs * 1e9
            roof = min(peak, c.intensity * bw)
            extra = (fps / peak, bps / bw, "compute" if roof >= peak else "memory", roof,
                     fps / roof if roof > 0 else None)
        points.append(RooflinePoint(stage, sec, c.intensity, fps, bps,
                                    spec.name if spec else device or "cpu", precision, *extra))
    return points
