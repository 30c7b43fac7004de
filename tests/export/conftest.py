"""Small test nets covering every op of the explicit gradient graph, and ORT helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

ort = pytest.importorskip("onnxruntime")


class PoolNet(nn.Module):
    """Strided/dilated convs, BN, overlapping 3x3/s2/p1 and 2x2 max-pools, avg-pools."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(3, 2, 1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.conv3 = nn.Conv2d(12, 12, 3, padding=2, dilation=2)
        self.pool2 = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.conv2(x))
        x = self.pool2(torch.relu(self.conv3(x)))
        x = F.avg_pool2d(self.avg(x), 2, stride=1)
        return self.head(x)


class Block(nn.Module):
    """Residual block with an optional strided 1x1 projection (`out += identity`)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return F.relu(out)


class ResNetLike(nn.Module):
    """ResNet stem (7x7/s2 conv, BN, ReLU, 3x3/s2/p1 max-pool) + residual blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 8, 1))
        self.layer2 = nn.Sequential(Block(8, 16, 2))
        self.classifier = nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.classifier(self.layer2(self.layer1(x)))


class FuseNet(nn.Module):
    """Encoder-decoder: nearest and bilinear upsampling, concat, adaptive pool, odd resize."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 6, 3, padding=1)
        self.enc2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.enc3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.fuse = nn.Conv2d(16, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.head = nn.Conv2d(22, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.enc1(x))                      # H
        b = F.relu(self.enc2(a))                      # H/2
        c = F.relu(self.enc3(b))                      # H/4
        up = F.interpolate(c, scale_factor=2, mode="nearest")
        f = F.relu(self.fuse(torch.cat([b, up], dim=1)))
        f = self.up(f)                                # H, bilinear
        g = F.interpolate(self.pool(f), size=(7, 5), mode="bilinear", align_corners=False)
        g = F.interpolate(g, size=f.shape[-2:], mode="nearest")  # non-integer ratios
        return self.head(torch.cat([f, a, g], dim=1))


NETS = {"pool": PoolNet, "resnet": ResNetLike, "fuse": FuseNet}


@pytest.fixture(params=sorted(NETS))
def net_name(request) -> str:
    """Name of each small test net."""
    return request.param


def _ort_session(model: onnx.ModelProto):
    """A CPU ONNX Runtime session for ``model``."""
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _random_seeds(out_shape: tuple[int, ...], k: int, rng: np.random.Generator) -> np.ndarray:
    """K one-hot seeds [K,C,h,w] at random (distinct) positions."""
    _, c, h, w = out_shape
    flat = rng.choice(c * h * w, size=k, replace=False)
    seeds = np.zeros((k, c * h * w), np.float32)
    seeds[np.arange(k), flat] = 1.0
    return seeds.reshape(k, c, h, w)


@pytest.fixture
def make_net(randomise_bn):
    """Factory: a seeded, eval-mode instance of test net ``name``."""

    def make(name: str) -> nn.Module:
        torch.manual_seed(0)
        return randomise_bn(NETS[name](), seed=1)

    return make


@pytest.fixture
def ort_session():
    """Factory: ORT CPU session from a ModelProto."""
    return _ort_session


@pytest.fixture
def random_seeds():
    """Factory: K random one-hot seeds for an output shape."""
    return _random_seeds


def pytest_collection_modifyitems(config, items) -> None:
    """Skip this folder's ``slow`` tests unless selected with ``-m slow`` (pyproject: excluded
    from the default run; addopts does not deselect them)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    here = str(Path(__file__).parent)
    for item in items:
        if "slow" in item.keywords and str(item.path).startswith(here):
            item.add_marker(skip)
