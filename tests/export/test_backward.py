"""Explicit gradient graph (ONNX Runtime) == torch.autograd, per peak, for both rules."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icnseg.compare import TOLERANCES
from icnseg.export.backward import build_gradient_model
from icnseg.export.opset import TRT_ALLOWED_OPS, check_trt_ops
from icnseg.export.trace import trace_module
from icnseg.models.prm_backprop import backprop_rule

SIZES = {"pool": (33, 31), "resnet": (33, 31), "fuse": (32, 32)}
TOL = TOLERANCES["export"].prm  # DESIGN: max abs err <= 1e-4 * max|R| in FP32


def autograd_per_peak(net: nn.Module, x: torch.Tensor, seeds: np.ndarray,
                      rule: str) -> np.ndarray:
    """Reference input gradients [K,3,H,W]: one torch backward per seed."""
    out = []
    with backprop_rule(net, rule):
        for seed in seeds:
            xk = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(net(xk), xk, torch.from_numpy(seed[None]))
            out.append(g[0].numpy())
    return np.stack(out)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def export_and_run(net, x, seeds, rule, ort_session):
    """Trace, export, check and run the gradient model; returns (y, grad, model)."""
    tg = trace_module(net, x)
    model = build_gradient_model(tg, rule)
    onnx.checker.check_model(model, full_check=True)
    check_trt_ops(model)
    y, grad = ort_session(model).run(None, {"x": x.numpy(), "seed": seeds})
    return y, grad, model


@pytest.mark.parametrize("rule", ["gradient", "prm"])
def test_backward_matches_autograd(net_name, rule, make_net, ort_session, random_seeds):
    net = make_net(net_name)
    x = torch.randn(1, 3, *SIZES[net_name], generator=torch.Generator().manual_seed(2))
    out_shape = tuple(net(x).shape)
    seeds = random_seeds(out_shape, 5, np.random.default_rng(3))
    y, grad, model = export_and_run(net, x, seeds, rule, ort_session)
    want = autograd_per_peak(net, x, seeds, rule)
    np.testing.assert_allclose(y, net(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert rel_err(grad, want) <= TOL
    r_got, r_want = np.maximum(grad.sum(1), 0), np.maximum(want.sum(1), 0)
    assert rel_err(r_got, r_want) <= TOL
    assert {n.op_type for n in model.graph.node} <= TRT_ALLOWED_OPS


def test_dynamic_k(make_net, ort_session, random_seeds):
    net = make_net("resnet")
    x = torch.randn(1, 3, 32, 32)
    model = build_gradient_model(trace_module(net, x))
    sess = ort_session(model)
    shape = tuple(net(x).shape)
    for k in (1, 7):
        seeds = random_seeds(shape, k, np.random.default_rng(k))
        _, grad = sess.run(None, {"x": x.numpy(), "seed": seeds})
        assert grad.shape == (k, 3, 32, 32)
        assert rel_err(grad, autograd_per_peak(net, x, seeds, "gradient")) <= TOL


class TieNet(nn.Module):
    """Max-pools over inputs full of exact ties (quantised values, flat zero regions)."""

    def __init__(self, k: int, s: int, p: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(k, s, p)
        self.pool2 = nn.MaxPool2d(2)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool2(self.pool(F.relu(x))))


@pytest.mark.parametrize("size", [(17, 18), (16, 20)])  # (16, 20): 2x2 pools tile it
@pytest.mark.parametrize("kernel,stride,pad", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)])
def test_maxpool_ties_route_to_first_max(kernel, stride, pad, size, ort_session, random_seeds):
    torch.manual_seed(0)
    net = TieNet(kernel, stride, pad).eval()
    x = torch.randint(-2, 3, (1, 3, *size)).float()  # many equal maxima per window
    seeds = random_seeds(tuple(net(x).shape), 6, np.random.default_rng(0))
    _, grad, _ = export_and_run(net, x, seeds, "gradient", ort_session)
    np.testing.assert_allclose(grad, autograd_per_peak(net, x, seeds, "gradient"), atol=1e-6)


class GeomNet(nn.Module):
    """Conv geometries: 'same' padding, groups, asymmetric kernel/stride, 1x1 stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, (3, 5), stride=(2, 1), padding=(1, 2))
        self.b = nn.Conv2d(6, 6, 3, padding="same", groups=3)
        self.c = nn.Conv2d(6, 4, 1, stride=2)
        self.d = nn.Conv2d(4, 4, 4, stride=3, padding=1, dilation=1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = self.drop(F.relu(self.b(x)).contiguous())
        return self.d(F.relu(self.c(x)))


@pytest.mark.parametrize("size", [(29, 30), (32, 35)])
def test_conv_geometries(size, ort_session, random_seeds):
    torch.manual_seed(1)
    net = GeomNet().eval()
    x = torch.randn(1, 3, *size)
    seeds = random_seeds(tuple(net(x).shape), 4, np.random.default_rng(1))
    _, grad, _ = export_and_run(net, x, seeds, "gradient", ort_session)
    assert rel_err(grad, autograd_per_peak(net, x, seeds, "gradient")) <= TOL


def test_tiny_backbone_both_rules(ort_session, random_seeds, randomise_bn):
    from icnseg.models.prm import PRMClassifier

    torch.manual_seed(0)
    net = randomise_bn(PRMClassifier("tiny", 3))
    x = torch.randn(1, 3, 40, 48)
    seeds = random_seeds(tuple(net(x).shape), 4, np.random.default_rng(5))
    for rule in ("gradient", "prm"):
        _, grad, _ = export_and_run(net, x, seeds, rule, ort_session)
        assert rel_err(grad, autograd_per_peak(net, x, seeds, rule)) <= TOL


class AdjointNet(nn.Module):
    """A 3-channel stem, a tiling 2x2 pool, an 8-channel conv and a dilated head (BN between)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 3, padding=2, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.stem(x))), 2)
        return self.head(F.relu(self.body(x)))


@pytest.mark.parametrize("rule", ["gradient", "prm"])
def test_adjoint_forms(rule, ort_session, random_seeds, randomise_bn):
    """Stride-1 convs with >= 8 input channels go back as flipped Convs, the tiling pool as a
    spread; only the 3-channel stem keeps a ConvTranspose; gradients still equal autograd."""
    torch.manual_seed(3)
    net = randomise_bn(AdjointNet())
    x = torch.randn(1, 3, 20, 24)
    seeds = random_seeds(tuple(net(x).shape), 5, np.random.default_rng(7))
    _, grad, model = export_and_run(net, x, seeds, rule, ort_session)
    assert rel_err(grad, autograd_per_peak(net, x, seeds, rule)) <= TOL
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ConvTranspose") == 1
    assert ops.count("Resize") == 1
