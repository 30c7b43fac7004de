"""Forward + explicit backward of a traced net as ordinary ONNX inference ops, batched over K.

The forward runs once at batch 1 and saves what the backward needs (ReLU masks, max-pool
selections, and for the ``prm`` rule the shifted conv inputs and 1/|Z|); the backward takes
seeds [K,...] and broadcasts those batch-1 tensors across K (DESIGN, "The explicit gradient
graph").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from icnseg.errors import ExportError
from icnseg.export import adjoints
from icnseg.export.graph import GraphBuilder
from icnseg.export.trace import TracedGraph, TracedOp
from icnseg.settings import PRM_EPS, RULES


@dataclass
class Forward:
    """ONNX names of every traced value (batch 1) and of the tensors saved for the backward."""

    values: dict[str, str]
    saved: dict[str, dict[str, str]] = field(default_factory=dict)


def emit_forward(gb: GraphBuilder, tg: TracedGraph, x: str, rule: str = "gradient") -> Forward:
    """Emit the forward pass of ``tg`` on ONNX tensor ``x`` [1,C,H,W]."""
    if rule not in RULES:
        raise ExportError(f"unknown backward rule {rule!r}; choose one of {', '.join(RULES)}")
    fwd = Forward({tg.input: x})
    for op in tg.ops:
        ins = [fwd.values[i] for i in op.inputs]
        fwd.values[op.name] = _forward_op(gb, op, ins, rule, fwd.saved.setdefault(op.name, {}))
    return fwd


def _conv_attrs(op: TracedOp) -> dict:
    """ONNX Conv attributes of a traced conv."""
    p = op.params
    return {"kernel_shape": list(p["weight"].shape[2:]), "strides": list(p["stride"]),
            "pads": list(p["pads"]), "dilations": list(p["dilation"]), "group": p["groups"]}


def _forward_op(gb: GraphBuilder, op: TracedOp, ins: list[str], rule: str,
                saved: dict[str, str]) -> str:
    """Emit one forward op; fill ``saved`` with what its backward needs."""
    x, p, n = ins[0], op.params, op.name
    if op.kind == "conv":
        w = gb.const(p["weight"], f"{n}.weight")
        cin = [x, w] + ([gb.const(p["bias"], f"{n}.bias")] if p["bias"] is not None else [])
        if rule == "prm":
            _prm_conv_state(gb, x, op, saved)
        saved["w"] = w
        return gb.op("Conv", cin, n, **_conv_attrs(op))
    if op.kind == "bn":
        c = op.out_shape[1]
        scale = gb.const(p["scale"].reshape(1, c, 1, 1), f"{n}.scale")
        saved["scale"] = scale
        y = gb.op("Mul", [x, scale], n)
        return gb.op("Add", [y, gb.const(p["shift"].reshape(1, c, 1, 1), f"{n}.shift")], n)
    if op.kind == "relu":
        y = gb.op("Relu", [x], n)
        saved["mask"] = gb.cast_float(gb.op("Greater", [y, gb.const(np.float32(0))], f"{n}.gt"),
                                      f"{n}.mask")
        return y
    if op.kind == "maxpool":
        y, saved["sel"] = adjoints.maxpool_forward(gb, x, op)
        return y
    if op.kind == "avgpool":
        return adjoints.avgpool_forward(gb, x, op)
    if op.kind == "resize":
        return adjoints.resize_forward(gb, x, op)
    if op.kind == "add":
        return gb.op("Add", ins, n)
    if op.kind == "cat":
        return gb.op("Concat", ins, n, axis=p["axis"])
    if op.kind == "identity":
        return x
    raise ExportError(f"{op.path}: no forward rule for kind {op.kind!r}")


def _prm_conv_state(gb: GraphBuilder, x: str, op: TracedOp, saved: dict[str, str]) -> None:
    """PRM rule state at a conv: U - min U, relu(W), and 1/(|Z|+eps) zeroed where Z < eps."""
    n = op.name
    umin = gb.reduce("ReduceMin", x, [1, 2, 3], True, f"{n}.umin")  # per sample (batch 1)
    um = gb.op("Sub", [x, umin], f"{n}.um")
    wpos = gb.const(np.maximum(op.params["weight"], 0.0), f"{n}.wpos")
    z = gb.op("Conv", [um, wpos], f"{n}.z", **_conv_attrs(op))
    den = gb.op("Add", [gb.op("Abs", [z], f"{n}.absz"), gb.const(np.float32(PRM_EPS))], f"{n}.den")
    inv = gb.op("Reciprocal", [den], f"{n}.invz")
    low = gb.op("Less", [z, gb.const(np.float32(PRM_EPS))], f"{n}.zlow")
    saved.update(um=um, wpos=wpos,
                 invz=gb.op("Where", [low, gb.const(np.float32(0)), inv], f"{n}.invz"))


# A gradient as (tensor [K,...], batch-1 factors [1,...] still to multiply into it): chains of
# ReLU masks, batch-norm scales, the prm rule's U - min U and 1/|Z| are multiplied together at
# batch 1 and applied to the K rows once (ReLU masks are 0/1: only the rounding order moves).
Grad = tuple[str, tuple[str, ...]]


def emit_backward(gb: GraphBuilder, tg: TracedGraph, fwd: Forward, seed: str,
                  rule: str = "gradient") -> str:
    """Emit d(seed · output)/d(input) for seeds [K,C,h,w]; returns the [K,3,H,W] gradient."""
    grads: dict[str, list[Grad]] = {tg.output: [(seed, ())]}
    for op in reversed(tg.ops):
        parts = grads.pop(op.name, None)
        if not parts:
            continue  # does not reach the output
        g = parts[0] if len(parts) == 1 else (
            _sum(gb, [_apply(gb, p, f"{op.name}.gpart") for p in parts], f"{op.name}.gsum"), ())
        gins = _backward_op(gb, op, g, rule, fwd.saved[op.name])
        for name, gin in zip(op.inputs, gins, strict=True):
            grads.setdefault(name, []).append(gin)
    parts = grads.pop(tg.input, None)
    if not parts:
        raise ExportError("the output does not depend on the input image")
    return _sum(gb, [_apply(gb, p, "grad_input.part") for p in parts], "grad_input")


def _product(gb: GraphBuilder, factors: tuple[str, ...], hint: str) -> str:
    """The batch-1 product of ``factors`` (at least one)."""
    out = factors[0]
    for f in factors[1:]:
        out = gb.op("Mul", [out, f], f"{hint}.factor")
    return out


def _apply(gb: GraphBuilder, grad: Grad, hint: str) -> str:
    """The gradient tensor with its pending factors multiplied in (one K-row Mul)."""
    g, factors = grad
    return gb.op("Mul", [g, _product(gb, factors, hint)], hint) if factors else g


def _sum(gb: GraphBuilder, parts: list[str], hint: str) -> str:
    """Sum gradient contributions of a tensor with several consumers."""
    if len(parts) == 1:
        return parts[0]
    return gb.op("Sum", parts, hint)


def _backward_op(gb: GraphBuilder, op: TracedOp, grad: Grad, rule: str,
                 saved: dict[str, str]) -> list[Grad]:
    """Input gradients of one op given its output gradient ``grad`` [K,...]."""
    p, n = op.params, op.name
    g, factors = grad
    if op.kind == "conv":
        geom = (tuple(p["weight"].shape[2:]), p["stride"], p["dilation"], p["pads"], p["groups"])
        if rule == "gradient":
            return [(adjoints.conv_adjoint(gb, _apply(gb, grad, f"{n}.gin"), p["weight"],
                                           saved["w"], op, *geom, f"{n}.grad"), ())]
        gz = _apply(gb, (g, (*factors, saved["invz"])), f"{n}.gz")
        back = adjoints.conv_adjoint(gb, gz, np.maximum(p["weight"], 0.0), saved["wpos"], op,
                                     *geom, f"{n}.gback")
        return [(back, (saved["um"],))]
    if op.kind == "bn":
        return [(g, (*factors, saved["scale"]))]
    if op.kind == "relu":
        return [(g, (*factors, saved["mask"]))]
    if op.kind == "maxpool":
        sel = saved["sel"]
        if factors:
            sel = gb.op("Mul", [sel, gb.unsqueeze(_product(gb, factors, f"{n}.gsel"), [2])],
                        f"{n}.gsel.factor")
        if adjoints.tiles_input(op):  # g spread over each window, the selection a factor
            return [(adjoints.window_spread(gb, g, op), (adjoints.window_layout(gb, sel, op),))]
        return [(adjoints.maxpool_backward(gb, g, sel, op), ())]
    if op.kind in ("add", "identity"):
        return [grad] * len(op.inputs)
    g = _apply(gb, grad, f"{n}.gin")
    if op.kind == "avgpool":
        return [(adjoints.avgpool_backward(gb, g, op), ())]
    if op.kind == "resize":
        return [(adjoints.resize_backward(gb, g, op), ())]
    if op.kind == "cat":
        outs = gb.op("Split", [g, gb.ints(p["sizes"], "split")], f"{n}.grad",
                     outputs=len(op.inputs), axis=p["axis"])
        return [(o, ()) for o in outs]
    raise ExportError(f"{op.path}: no backward rule for kind {op.kind!r}")


def build_gradient_model(tg: TracedGraph, rule: str = "gradient", opset: int = 17
                         ) -> onnx.ModelProto:
    """Standalone model: inputs x [1,C,H,W] and seed [K,Co,h,w]; outputs y and dL/dx [K,C,H,W]."""
    gb = GraphBuilder(opset)
    x = gb.add_input("x", list(tg.input_shape))
    seed = gb.add_input("seed", ["K", *tg.output_shape[1:]])
    fwd = emit_forward(gb, tg, x, rule)
    grad = emit_backward(gb, tg, fwd, seed, rule)
    gb.add_output(fwd.values[tg.output], "y", list(tg.output_shape))
    gb.add_output(grad, "grad", ["K", *tg.input_shape[1:]])
    return gb.model("icnseg_gradient")
