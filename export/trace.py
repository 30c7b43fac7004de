"""Trace an eval-mode torch module into a flat, shape-annotated op list for the gradient graph."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from icnseg.errors import ExportError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TracedOp:
    """One op: ``kind`` in conv/bn/relu/maxpool/avgpool/add/resize/cat/identity."""

    kind: str
    name: str
    path: str
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TracedGraph:
    """The traced op list (topological order) between one image input and one map output."""

    input: str
    input_shape: Shape
    output: str
    output_shape: Shape
    ops: list[TracedOp]

    def kinds(self) -> dict[str, int]:
        """Return {kind: count} (for reports and tests)."""
        out: dict[str, int] = {}
        for op in self.ops:
            out[op.kind] = out.get(op.kind, 0) + 1
        return out


# Parameter names of the functional forms, so positional and keyword calls bind alike.
_SIGS: dict[Any, tuple[str, ...]] = {
    F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                   "return_indices"),
    F.avg_pool2d: ("input", "kernel_size", "stride", "padding", "ceil_mode",
                   "count_include_pad", "divisor_override"),
    F.adaptive_avg_pool2d: ("input", "output_size"),
    F.interpolate: ("input", "size", "scale_factor", "mode", "align_corners",
                    "recompute_scale_factor", "antialias"),
    F.dropout: ("input", "p", "training", "inplace"),
}
_RELU_FNS = {F.relu, torch.relu, torch.relu_, F.relu_}
_ADD_FNS = {operator.add, operator.iadd, torch.add}
_CAT_FNS = {torch.cat, torch.concat}
_IDENTITY_METHODS = {"contiguous", "clone"}


def _pair(v: Any) -> tuple[int, int]:
    """Normalise an int or 2-sequence to a pair of ints."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _np(t: torch.Tensor) -> np.ndarray:
    """Detach a tensor to a float32 numpy array."""
    return t.detach().cpu().to(torch.float32).numpy().copy()


class _Interp(fx.Interpreter):
    """Runs the traced module once, keeping every intermediate value (for shapes and ints)."""


def _bind(fn: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Bind a functional call's arguments to their parameter names."""
    names = _SIGS[fn]
    out = dict(zip(names, args, strict=False))
    out.update(kwargs)
    return out


def _pool_module(fn: Any, kw: dict[str, Any]) -> nn.Module:
    """Build the module equivalent of a functional pooling call."""
    kw = {k: v for k, v in kw.items() if k != "input"}
    if fn is F.max_pool2d:
        return nn.MaxPool2d(**kw)
    if fn is F.avg_pool2d:
        return nn.AvgPool2d(**kw)
    return nn.AdaptiveAvgPool2d(**kw)


class _Tracer:
    """Turns fx nodes plus their concrete values into TracedOps."""

    def __init__(self, gm: fx.GraphModule, env: dict[fx.Node, Any]) -> None:
        self.gm, self.env = gm, env
        self.tensors: dict[str, Shape] = {}  # data tensors (depend on the input)
        self.ops: list[TracedOp] = []

    def val(self, a: Any) -> Any:
        """Concrete value of an fx argument (nodes replaced by what they computed)."""
        return fx.node.map_arg(a, lambda n: self.env[n])

    def data(self, node: fx.Node, a: Any, path: str, what: str) -> str:
        """Name of a data-tensor argument, or ExportError if it is a constant or non-tensor."""
        if isinstance(a, fx.Node) and a.name in self.tensors:
            return a.name
        raise ExportError(f"{path}: {what} with a constant or non-tensor operand is unsupported "
                          f"for the explicit gradient graph (node {node.name})")

    def emit(self, node: fx.Node, kind: str, path: str, inputs: list[str], **params: Any) -> None:
        """Record one op for ``node``."""
        out = tuple(self.env[node].shape)
        self.tensors[node.name] = out
        self.ops.append(TracedOp(kind, node.name, path, tuple(inputs),
                                 tuple(self.tensors[i] for i in inputs), out, params))

    # -- dispatch ------------------------------------------------------------------------
    def node(self, node: fx.Node) -> None:
        """Translate one call node (modules, functions, methods)."""
        value = self.env[node]
        if node.op == "call_module":
            path = str(node.target)
            self.module(node, self.gm.get_submodule(path), path)
            return
        path = _owner_path(node)
        fn = node.target
        opname = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
        tensor_args = [a for a in node.all_input_nodes if a.name in self.tensors]
        if not isinstance(value, torch.Tensor) or not tensor_args:
            if isinstance(value, torch.Tensor) or _has_tensor(value):
                if tensor_args or isinstance(value, (tuple, list)):
                    raise _unsupported(path, opname)
                return  # a constant tensor, only usable as a parameter
            return  # shape arithmetic: its concrete value is baked into consumers
        x = node.args[0] if node.args else None
        if fn in _RELU_FNS or fn in ("relu", "relu_"):
            self.emit(node, "relu", path, [self.data(node, x, path, "relu")])
        elif fn in _ADD_FNS or fn in ("add", "add_", "__add__", "__iadd__"):
            self.add(node, path)
        elif fn in _CAT_FNS:
            kw = dict(zip(("tensors", "dim"), node.args, strict=False)) | dict(node.kwargs)
            ins = [self.data(node, t, path, "cat") for t in kw["tensors"]]
            dim = int(kw.get("dim", 0)) % len(self.tensors[ins[0]])
            if dim == 0:
                raise ExportError(f"{path}: cat along the batch axis is unsupported")
            self.emit(node, "cat", path, ins, axis=dim,
                      sizes=[self.tensors[i][dim] for i in ins])
        elif fn in _IDENTITY_METHODS or (fn is F.dropout and not self.val(
                _bind(fn, node.args, node.kwargs).get("training", True))):
            self.emit(node, "identity", path, [self.data(node, x, path, opname)])
        elif fn in (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d):
            kw = dict(self.val(_bind(fn, node.args, node.kwargs)))
            self.module(node, _pool_module(fn, kw), path, src=x)
        elif fn is F.interpolate:
            kw = dict(self.val(_bind(fn, node.args, node.kwargs)))
            kw.pop("input")
            if kw.pop("antialias", False):
                raise ExportError(f"{path}: antialiased interpolate is unsupported")
            self.resize(node, path, x, kw.get("mode", "nearest"),
                        lambda t: F.interpolate(t, **kw))
        else:
            raise _unsupported(path, opname)

    def add(self, node: fx.Node, path: str) -> None:
        """Residual add of two same-shaped data tensors."""
        names = ("input", "other", "alpha")
        kw = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        if self.val(kw.get("alpha", 1)) != 1:
            raise ExportError(f"{path}: add with alpha != 1 is unsupported")
        a = self.data(node, kw["input"], path, "add")
        b = self.data(node, kw["other"], path, "add")
        if self.tensors[a] != self.tensors[b]:
            raise ExportError(f"{path}: broadcasting add {self.tensors[a]} + {self.tensors[b]} "
                              "is unsupported")
        self.emit(node, "add", path, [a, b])

    def resize(self, node: fx.Node, path: str, x: Any, mode: str,
               fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Nearest/bilinear resize, recorded with its exact per-axis interpolation matrices."""
        src = self.data(node, x, path, "interpolate")
        if mode not in ("nearest", "bilinear"):
            raise ExportError(f"{path}: unsupported op 'interpolate' with mode {mode!r} for the "
                              "explicit gradient graph (nearest and bilinear only)")
        _, _, ih, iw = self.tensors[src]
        _, _, oh, ow = self.env[node].shape
        # Separable: a one-hot basis along one axis, constant along the other, gives the
        # matrix of that axis (interpolation weights sum to one along the constant axis).
        with torch.no_grad():
            bh = torch.eye(ih).reshape(1, ih, ih, 1).expand(1, ih, ih, iw).contiguous()
            bw = torch.eye(iw).reshape(1, iw, 1, iw).expand(1, iw, ih, iw).contiguous()
            a_h = _np(fn(bh)[0, :, :, 0]).T  # [oh, ih]
            a_w = _np(fn(bw)[0, :, 0, :]).T  # [ow, iw]
        self.emit(node, "resize", path, [src], mode=mode, a_h=a_h, a_w=a_w, size=(oh, ow))

    def module(self, node: fx.Node, mod: nn.Module, path: str, src: Any = None) -> None:
        """Translate a leaf module call."""
        x = node.args[0] if src is None else src
        name = type(mod).__name__
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            self.emit(node, "identity", path, [self.data(node, x, path, name)])
        elif isinstance(mod, nn.ReLU):
            self.emit(node, "relu", path, [self.data(node, x, path, name)])
        elif isinstance(mod, nn.Conv2d):
            self.emit(node, "conv", path, [self.data(node, x, path, name)],
                      **_conv_params(mod, path))
        elif isinstance(mod, nn.BatchNorm2d):
            if mod.training or mod.running_mean is None:
                raise ExportError(f"{path}: BatchNorm2d must be in eval mode with running stats")
            scale = mod.weight.detach() if mod.affine else torch.ones_like(mod.running_var)
            shift = mod.bias.detach() if mod.affine else torch.zeros_like(mod.running_var)
            scale = scale / torch.sqrt(mod.running_var + mod.eps)
            self.emit(node, "bn", path, [self.data(node, x, path, name)],
                      scale=_np(scale), shift=_np(shift - mod.running_mean * scale))
        elif isinstance(mod, nn.MaxPool2d):
            if mod.ceil_mode or mod.return_indices:
                raise ExportError(f"{path}: MaxPool2d with ceil_mode/return_indices is unsupported")
            k = _pair(mod.kernel_size)
            self.emit(node, "maxpool", path, [self.data(node, x, path, name)], kernel=k,
                      stride=_pair(mod.stride or k), pad=_pair(mod.padding),
                      dilation=_pair(mod.dilation))
        elif isinstance(mod, nn.AvgPool2d):
            if mod.ceil_mode:
                raise ExportError(f"{path}: AvgPool2d with ceil_mode is unsupported")
            k = _pair(mod.kernel_size)
            self.emit(node, "avgpool", path, [self.data(node, x, path, name)], kernel=k,
                      stride=_pair(mod.stride or k), pad=_pair(mod.padding),
                      count_include_pad=bool(mod.count_include_pad),
                      divisor=mod.divisor_override)
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            a = self.data(node, x, path, name)
            (ih, iw), (oh, ow) = self.tensors[a][2:], tuple(self.env[node].shape[2:])
            if ih % oh or iw % ow:
                raise ExportError(f"{path}: AdaptiveAvgPool2d {ih}x{iw} -> {oh}x{ow} is not a "
                                  "uniform pooling; unsupported for the explicit gradient graph")
            k = (ih // oh, iw // ow)
            self.emit(node, "avgpool", path, [a], kernel=k, stride=k, pad=(0, 0),
                      count_include_pad=True, divisor=None)
        elif isinstance(mod, nn.Upsample):
            self.resize(node, path, x, mod.mode, mod)
        else:
            raise _unsupported(path, name)


def _conv_params(mod: nn.Conv2d, path: str) -> dict[str, Any]:
    """Weights and geometry of a Conv2d; pads as (top, left, bottom, right)."""
    if mod.padding_mode != "zeros":
        raise ExportError(f"{path}: Conv2d padding_mode={mod.padding_mode!r} is unsupported")
    k, d = _pair(mod.kernel_size), _pair(mod.dilation)
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            pads = (0, 0, 0, 0)
        else:  # "same": PyTorch puts the odd extra pixel at the bottom/right
            th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
            pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = _pair(mod.padding)
        pads = (ph, pw, ph, pw)
    bias = None if mod.bias is None else _np(mod.bias)
    return {"weight": _np(mod.weight), "bias": bias, "stride": _pair(mod.stride), "pads": pads,
            "dilation": d, "groups": int(mod.groups)}


def _has_tensor(v: Any) -> bool:
    """True if ``v`` is or contains a tensor."""
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and any(_has_tensor(x) for x in v)


def _owner_path(node: fx.Node) -> str:
    """Qualified name of the module whose forward issued ``node`` ('' for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    return (list(stack.keys())[-1] if stack else "") or "<root>"


def _unsupported(path: str, opname: str) -> ExportError:
    """The error for an op without an explicit-gradient rule."""
    return ExportError(f"{path}: unsupported op {opname!r} for the explicit gradient graph")


def trace_module(module: nn.Module, sample: torch.Tensor) -> TracedGraph:
    """Trace ``module`` (put in eval mode) on ``sample`` [1,C,H,W] into a TracedGraph."""
    module.eval()
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable code
        raise ExportError(f"cannot trace {type(module).__name__} with torch.fx: {exc}") from exc
    interp = _Interp(gm, garbage_collect_values=False)
    with torch.no_grad():
        result = interp.run(sample)
    env = interp.env
    tracer = _Tracer(gm, env)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"{type(module).__name__}: expected one tensor input, "
                          f"got {len(placeholders)}")
    inp = placeholders[0]
    tracer.tensors[inp.name] = tuple(sample.shape)
    out_node = None
    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_function", "call_method"):
            tracer.node(node)
        elif node.op == "output":
            out_node = node.args[0]
    if not isinstance(out_node, fx.Node) or out_node.name not in tracer.tensors:
        raise ExportError(f"{type(module).__name__}: the output must be one tensor computed "
                          "from the input")
    if not isinstance(result, torch.Tensor) or result.dim() != 4:
        raise ExportError(f"{type(module).__name__}: the output must be a 4-D map")
    return TracedGraph(inp.name, tuple(sample.shape), out_node.name, tuple(result.shape),
                       tracer.ops)
