"""Fully convolutional backbones (tiny, vgg16, resnet50) with torchvision state_dict keys.

No torchvision dependency: the layers are written out here with torchvision's module names and
indices, so a user's torchvision ImageNet weight file loads with ``load_pretrained``.
Every backbone has ``out_channels`` and ``stride`` and maps ``[B,3,H,W]`` to a feature map.
ReLUs are not in-place so that custom backward rules (prm_backprop) can save conv inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from icnseg.errors import CheckpointError, ConfigError

BACKBONES = ("tiny", "vgg16", "resnet50")

# torchvision's VGG-16 configuration "D": channel counts, "M" = 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M") + (256,) * 3 + ("M",) + ((512,) * 3 + ("M",)) * 2
# Tiny: (out_channels, followed by a 2x2 max-pool?) per conv+BN+ReLU; stride 8, ~0.4 M params.
_TINY_CFG = ((32, True), (64, True), (96, False), (96, True), (128, False), (128, False))
# Prefixes of classification heads that load_pretrained ignores.
_HEAD_PREFIXES = ("fc.", "classifier.")


def vgg_layers(cfg: tuple, in_channels: int = 3) -> nn.Sequential:
    """Build torchvision's VGG ``features`` Sequential (conv, ReLU, ..., MaxPool) from ``cfg``."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU()]
            in_channels = int(v)
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """VGG-16 conv layers; the last max-pool (features.30) is kept for key layout but not run."""

    out_channels = 512
    stride = 16

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg_layers(_VGG16_CFG)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return conv5_3 features (after ReLU) at stride 16."""
        for layer in list(self.features)[:30]:
            x = layer(x)
        return x


class TinyBackbone(nn.Module):
    """Small conv+BN+ReLU net for fast CPU training on synthetic shapes (stride 8, 128 ch)."""

    out_channels = 128
    stride = 8

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, pool in _TINY_CFG:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the stride-8 feature map."""
        return self.features(x)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck forward."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Features(nn.Module):
    """ResNet-50 without avgpool/fc: conv1..layer4, stride 32, 2048 channels."""

    out_channels = 2048
    stride = 32

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [Bottleneck(in_planes, planes, stride)]
            in_planes = planes * Bottleneck.expansion
            blocks += [Bottleneck(in_planes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return layer4 features at stride 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_backbone(name: str) -> nn.Module:
    """Return a freshly initialised backbone ``name`` (one of ``BACKBONES``)."""
    if name == "tiny":
        return TinyBackbone()
    if name == "vgg16":
        return VGG16Features()
    if name == "resnet50":
        return ResNet50Features()
    raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a flat tensor dict from ``.safetensors`` or a torch file (weights_only)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        from icnseg.checkpoint import load_failure

        raise CheckpointError(f"{path}: cannot read weights ({load_failure(exc)})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: not a state_dict of tensors")
    return state


def load_pretrained(backbone: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load torchvision ImageNet weights from ``path`` into ``backbone`` (fc/classifier ignored)."""
    path = Path(path)
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(_HEAD_PREFIXES)}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit backbone {type(backbone).__name__}; "
            f"missing keys {_short(missing)}, unexpected keys {_short(unexpected)}"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{path}: shape mismatch for {len(bad)} keys, e.g. {k}: "
            f"file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        )
    backbone.load_state_dict(state, strict=True)
    return backbone


def _short(keys: list[str], n: int = 6) -> str:
    """Format a key list for an error message, truncated to ``n`` items."""
    if not keys:
        return "[]"
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + more + "]"
