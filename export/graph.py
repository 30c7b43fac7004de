"""A small ONNX graph builder: unique names, initializers, opset-aware helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Accumulates nodes and initializers; every op returns its (unique) output name."""

    def __init__(self, opset: int = 17) -> None:
        """Start an empty graph for ONNX ``opset`` (>= 13)."""
        if opset < 13:
            raise ValueError(f"opset {opset} unsupported (need >= 13)")
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._consts: dict[tuple, str] = {}

    def unique(self, hint: str) -> str:
        """Return a fresh name derived from ``hint``."""
        base = "".join(ch if ch.isalnum() or ch in "._/" else "_" for ch in hint) or "t"
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, value: np.ndarray | float | int | Sequence, hint: str = "c") -> str:
        """Add an initializer (deduplicated for small arrays) and return its name."""
        arr = np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = None
        if arr.size <= 64:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._consts:
                return self._consts[key]
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.array(arr, order="C"), name))
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values: Sequence[int], hint: str = "i64") -> str:
        """Add an int64 1-D initializer (shapes, axes, split sizes)."""
        return self.const(np.asarray(list(values), dtype=np.int64), hint)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None,
           outputs: int = 1, **attrs) -> str | list[str]:
        """Append node ``op_type``; return its output name (a list when ``outputs`` > 1)."""
        hint = hint or op_type.lower()
        outs = [self.unique(hint if outputs == 1 else f"{hint}_{i}") for i in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.unique(f"n/{hint}"), **attrs))
        return outs[0] if outputs == 1 else outs

    # -- opset-aware helpers -------------------------------------------------------------
    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool = True,
               hint: str | None = None) -> str:
        """ReduceSum/Min/Max/Mean over ``axes`` (axes moved to an input in opsets 13/18)."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(op_type, [x, self.ints(axes, "axes")], hint, keepdims=int(keepdims))
        return self.op(op_type, [x], hint, axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes: Sequence[int], hint: str | None = None) -> str:
        """Unsqueeze with axes as an input (opset >= 13)."""
        return self.op("Unsqueeze", [x, self.ints(axes, "axes")], hint)

    def reshape(self, x: str, shape: Sequence[int], hint: str | None = None) -> str:
        """Reshape to a constant ``shape`` (-1 allowed once)."""
        return self.op("Reshape", [x, self.ints(shape, "shape")], hint)

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
              steps: Sequence[int] | None = None, hint: str | None = None) -> str:
        """Slice with constant starts/ends/axes/steps."""
        ins = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            ins.append(self.ints(steps, "steps"))
        return self.op("Slice", ins, hint)

    def cast_float(self, x: str, hint: str | None = None) -> str:
        """Cast to float32."""
        return self.op("Cast", [x], hint, to=TensorProto.FLOAT)

    # -- model assembly ------------------------------------------------------------------
    def add_input(self, name: str, shape: Sequence[int | str],
                  elem: int = TensorProto.FLOAT) -> str:
        """Declare a graph input."""
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def add_output(self, src: str, name: str, shape: Sequence[int | str] | None,
                   elem: int = TensorProto.FLOAT) -> str:
        """Expose ``src`` as graph output ``name`` (via Identity when the names differ)."""
        if src != name:
            self._used.add(name)
            self.nodes.append(helper.make_node("Identity", [src], [name],
                                               name=self.unique(f"n/{name}")))
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def model(self, graph_name: str = "icnseg",
              metadata: dict[str, str] | None = None) -> onnx.ModelProto:
        """Assemble the ModelProto."""
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs,
                                  initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="icnseg")
        model.ir_version = min(model.ir_version, 8 if self.opset <= 17 else 9)
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model
