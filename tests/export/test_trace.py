"""Tracing: op kinds, shapes, and clear errors for ops without an explicit-gradient rule."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from icnseg.errors import ExportError
from icnseg.export.opset import TRT_ALLOWED_OPS, check_trt_ops, op_histogram
from icnseg.export.trace import trace_module


def test_kinds_and_shapes(make_net):
    tg = trace_module(make_net("resnet"), torch.zeros(1, 3, 32, 32))
    kinds = tg.kinds()
    assert kinds == {"conv": 9, "bn": 8, "relu": 7, "maxpool": 1, "add": 3}
    assert tg.output_shape == (1, 5, 4, 4)
    pool = next(op for op in tg.ops if op.kind == "maxpool")
    assert pool.params["kernel"] == (3, 3) and pool.params["pad"] == (1, 1)
    assert pool.in_shapes == ((1, 8, 16, 16),) and pool.out_shape == (1, 8, 8, 8)


def test_fuse_net_resizes_and_cat(make_net):
    tg = trace_module(make_net("fuse"), torch.zeros(1, 3, 32, 32))
    resizes = [op for op in tg.ops if op.kind == "resize"]
    assert [op.params["size"] for op in resizes] == [(16, 16), (32, 32), (7, 5), (32, 32)]
    assert [op.params["sizes"] for op in tg.ops if op.kind == "cat"] == [[8, 8], [8, 6, 8]]


class SE(nn.Module):
    """Squeeze-excitation gate: a sigmoid, which has no explicit-gradient rule."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate(x)


class FnSE(nn.Module):
    """The same gate as a function call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


def _wrap(se: nn.Module) -> nn.Module:
    """Put ``se`` at module path layer2.0.se."""
    block = nn.Module()
    block.se = se
    net = nn.Module()
    net.layer2 = nn.Sequential(block)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.layer2 = net.layer2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer2[0].se(self.conv(x))

    return Net()


@pytest.mark.parametrize("se,pattern", [
    (SE(), r"layer2\.0\.se\.gate: unsupported op 'Sigmoid'"),
    (FnSE(), r"layer2\.0\.se: unsupported op 'sigmoid'"),
])
def test_unsupported_op_names_op_and_path(se, pattern):
    with pytest.raises(ExportError, match=pattern):
        trace_module(_wrap(se), torch.zeros(1, 3, 8, 8))


class Flat(nn.Module):
    """A flatten + linear head (not fully convolutional)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_flatten_and_other_unsupported():
    with pytest.raises(ExportError, match="unsupported op 'flatten'"):
        trace_module(Flat(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ExportError, match="ceil_mode"):
        trace_module(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ExportError, match="mode 'bicubic'"):
        trace_module(nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic")),
                     torch.zeros(1, 3, 4, 4))
    with pytest.raises(ExportError, match="BatchNorm2d must be in eval mode"):
        class Train(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bn = nn.BatchNorm2d(3, track_running_stats=False)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.bn(x)

        trace_module(Train(), torch.zeros(1, 3, 4, 4))


def test_trt_checker_rejects_foreign_ops():
    node = onnx.helper.make_node("ScatterND", ["x", "i", "u"], ["y"])
    custom = onnx.helper.make_node("Peak", ["y"], ["z"], domain="com.example")
    graph = onnx.helper.make_graph([node, custom], "g", [], [])
    model = onnx.helper.make_model(graph)
    with pytest.raises(ExportError, match="ScatterND.*custom domain"):
        check_trt_ops(model)
    assert op_histogram(model) == {"ScatterND": 1, "Peak": 1}
    assert "Loop" not in TRT_ALLOWED_OPS and "ScatterND" not in TRT_ALLOWED_OPS
