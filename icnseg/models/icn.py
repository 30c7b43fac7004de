"""ICN: Instance-aware Cue-propagation Network (paper section 3.2, Fig. 3).

Input: normalised image [K,3,H,W] (or [1,3,H,W], shared by all K) concatenated with the raw
PRM [K,1,H,W] min-max normalised per sample inside: ``(p - min) / (max - min + 1e-12)``.
H and W must be divisible by 16 (four 2x2 max-pools between the five encoder stages).

* Encoder: five stages f1..f5 at strides 1, 2, 4, 8, 16. "vgg16" = VGG-16 conv1_1..conv5_3
  with a 4-channel first conv (module names ``encoder.features.N`` as torchvision's VGG);
  "tiny" = the same layout with 16-32-48-64-64 channels.
* CFM (top-down, Eq. 3): c5 = f5, c_i = E(C(U(c_{i+1}), f_i)) for i = 4..1 with U = bilinear x2.
* DFM (bottom-up): d1 = f1, d_i = E(C(D(d_{i-1}), f_i)) for i = 2..5. Eq. 3 always upsamples
  the smaller map, which would keep the whole bottom-up path at full resolution; we instead
  bring the larger map DOWN (D = 2x2 max-pool) so each fusion runs at the deeper level's
  resolution and the DFM ends at stride 16.
* Mapping: C(c1, U16(d5)) -> 3x3 conv+ReLU -> 3x3 conv+ReLU -> 1x1 conv -> logits [K,1,H,W].
  The first conv's d5 half is computed at stride 16 (``conv_of_upsampled``): the same sums
  without the full-resolution d5 (80 % of that conv's work, and the biggest Resize/Concat).
E = two 3x3 conv+ReLU. Table 1's ablations are ``variant``s: "no_fusion" (w/o CFM and DFM:
the mapping reads U16(f5) alone) and "no_prm" (w/o input PRM: the encoder sees the image only,
so every instance of an image gets the same map). Ops: Conv, Relu, MaxPool, Resize (bilinear,
align_corners=False), Concat, MatMul, Sigmoid (+ ReduceMin/ReduceMax/Sub/Div for the min-max
normalisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icnseg.errors import ConfigError
from icnseg.models.backbones import vgg_layers
from icnseg.upsample import bilinear_taps

ENCODERS = ("vgg16", "tiny")
VARIANTS = ("full", "no_fusion", "no_prm")  # Table 1: full, w/o CFM and DFM, w/o input PRM
SIZE_DIVISOR = 16
MINMAX_EPS = 1e-12
# Per encoder: encoder stage channels and fusion (CFM/DFM) widths per level 1..5.
_SPECS = {
    "vgg16": ((64, 128, 256, 512, 512), (64, 128, 256, 256, 256), (2, 2, 3, 3, 3)),
    "tiny": ((16, 32, 48, 64, 64), (16, 32, 48, 64, 64), (2, 2, 2, 2, 2)),
}


def minmax_normalize(p: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """Return ``(p - min) / (max - min + eps)`` with min/max over all but the batch dimension."""
    dims = tuple(range(1, p.ndim))
    lo = p.amin(dim=dims, keepdim=True)
    hi = p.amax(dim=dims, keepdim=True)
    return (p - lo) / (hi - lo + eps)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """E(., theta) of Eq. 3: two 3x3 conv + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
    )


class Encoder(nn.Module):
    """Five-stage VGG-style encoder on image + PRM (4 channels; 3 without the PRM); returns
    [f1..f5]."""

    def __init__(self, channels: tuple[int, ...], convs: tuple[int, ...], in_channels: int = 4
                 ) -> None:
        super().__init__()
        cfg: list = []
        for i, (c, n) in enumerate(zip(channels, convs, strict=True)):
            cfg += [c] * n + (["M"] if i < len(channels) - 1 else [])
        self.features = vgg_layers(tuple(cfg), in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the stage outputs taken just before each max-pool, plus the last stage."""
        feats = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                feats.append(x)
            x = layer(x)
        feats.append(x)
        return feats


def _fusions(levels: tuple[int, ...], c_first: int, enc: tuple[int, ...],
             width: tuple[int, ...]) -> nn.ModuleList:
    """One fusion (Eq. 3: concat + two 3x3 conv+ReLU) per level, each fed by the previous."""
    mods, c_in = [], c_first
    for i in levels:
        mods.append(_double_conv(c_in + enc[i], width[i]))
        c_in = width[i]
    return nn.ModuleList(mods)


def _shifted_taps(n_in: int, n_out: int) -> torch.Tensor:
    """Bilinear upsampling matrices [3, n_out, n_in] with rows shifted by -1, 0, +1 (rows
    that fall outside the output are zero: a 3x3 convolution's zero padding)."""
    n_in, n_out = int(n_in), int(n_out)  # sizes are tensors while tracing (a fixed-size graph)
    lo, hi, wt = bilinear_taps(n_in, n_out)
    a = torch.zeros(n_out + 2, n_in)  # one zero row of padding on each side
    rows = torch.arange(1, n_out + 1)
    a[rows, torch.from_numpy(lo)] += 1 - torch.from_numpy(wt)
    a[rows, torch.from_numpy(hi)] += torch.from_numpy(wt)
    return torch.stack([a[s:s + n_out] for s in range(3)])


def conv_of_upsampled(d: torch.Tensor, weight: torch.Tensor, size: tuple[int, int]
                      ) -> torch.Tensor:
    """``conv2d(U(d), weight, padding=1)`` for U = bilinear resize to ``size``, computed at
    d's resolution: U is linear (U(d) = A_y d A_x^T), so each 3x3 tap's channel mix runs on
    d and only O maps (not C) are upsampled, by the tap-shifted A_y and A_x."""
    o, c = int(weight.shape[0]), int(weight.shape[1])
    k, h, w = d.shape[0], int(d.shape[2]), int(d.shape[3])  # K stays dynamic in a graph
    ay = _shifted_taps(h, size[0]).to(d)  # [3 (tap row i), H, h]
    ax = _shifted_taps(w, size[1]).to(d)  # [3 (tap column j), W, w]
    # e[k, o, i, j] = sum_c weight[o, c, i, j] d[k, c]: a 1x1 conv with O*9 outputs
    e = F.conv2d(d, weight.permute(0, 2, 3, 1).reshape(o * 9, c, 1, 1))
    e = e.reshape(k, o, 3, 3, h, w).permute(0, 1, 2, 4, 3, 5).reshape(k, o, 3, h, 3 * w)
    g = e @ ax.permute(0, 2, 1).reshape(3 * w, size[1])  # sum over j and d's columns
    by = ay.permute(1, 0, 2).reshape(size[0], 3 * h)  # sum over i and d's rows
    return by @ g.reshape(k, o, 3 * h, size[1])


class ICN(nn.Module):
    """PRM enhancer: image + min-max-normalised PRM -> instance map [K,1,H,W]."""

    def __init__(self, encoder: str = "vgg16", variant: str = "full") -> None:
        super().__init__()
        if encoder not in _SPECS:
            raise ConfigError(f"unknown ICN encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
        if variant not in VARIANTS:
            raise ConfigError(f"unknown ICN variant {variant!r}; choose from {', '.join(VARIANTS)}")
        enc, width, convs = _SPECS[encoder]
        self.encoder_name, self.variant = encoder, variant
        self.encoder = Encoder(enc, convs, in_channels=3 if variant == "no_prm" else 4)
        fused = variant != "no_fusion"
        # CFM level i (0-based 3..0): fuses U(c_{i+1}) with f_i.
        self.cfm = _fusions((3, 2, 1, 0), enc[4], enc, width) if fused else nn.ModuleList()
        # DFM level i (0-based 1..4): fuses D(d_{i-1}) with f_i.
        self.dfm = _fusions((1, 2, 3, 4), enc[0], enc, width) if fused else nn.ModuleList()
        self.mapping = nn.Sequential(
            nn.Conv2d(width[0] + width[4] if fused else enc[4], width[0], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width[0], width[0], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width[0], 1, 1),
        )

    def logits(self, image: torch.Tensor, prm: torch.Tensor, factored: bool = True
               ) -> torch.Tensor:
        """Return pre-sigmoid maps [K,1,H,W] for image [K or 1,3,H,W] and raw PRM [K,1,H,W];
        ``factored=False`` upsamples d5 first (an ONNX graph whose H, W are not fixed)."""
        if prm.ndim == 3:
            prm = prm.unsqueeze(1)
        if image.ndim != 4 or image.shape[1] != 3 or prm.ndim != 4 or prm.shape[1] != 1:
            raise ConfigError(
                f"ICN expects image [K,3,H,W] and prm [K,1,H,W], got {tuple(image.shape)} "
                f"and {tuple(prm.shape)}"
            )
        h, w = prm.shape[-2:]
        if image.shape[-2:] != prm.shape[-2:]:
            raise ConfigError(f"image {tuple(image.shape)} and prm {tuple(prm.shape)} sizes differ")
        if h % SIZE_DIVISOR or w % SIZE_DIVISOR:
            raise ConfigError(f"ICN input size {h}x{w} must be divisible by {SIZE_DIVISOR}")
        k = prm.shape[0]
        if image.shape[0] != k:
            if image.shape[0] != 1:
                raise ConfigError(f"image batch {image.shape[0]} must be 1 or match prm batch {k}")
            image = image.expand(k, -1, -1, -1)
        if self.variant == "no_prm":
            f = self.encoder(image)
        else:
            f = self.encoder(torch.cat([image, minmax_normalize(prm)], dim=1))
        size = (int(h), int(w))
        if self.variant == "no_fusion":
            return self._mapped(None, f[4], size, factored)
        c = f[4]
        for fuse, i in zip(self.cfm, (3, 2, 1, 0), strict=True):
            up = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)
            c = fuse(torch.cat([up, f[i]], dim=1))
        d = f[0]
        for fuse, i in zip(self.dfm, (1, 2, 3, 4), strict=True):
            d = fuse(torch.cat([F.max_pool2d(d, 2, 2), f[i]], dim=1))
        return self._mapped(c, d, size, factored)

    def _mapped(self, c: torch.Tensor | None, d: torch.Tensor, size: tuple[int, int],
                factored: bool) -> torch.Tensor:
        """mapping(C(c, U16(d))) (c None: mapping(U16(d))); ``factored``: d's share of the
        first conv computed at d's stride (``conv_of_upsampled``)."""
        if not factored:
            up = F.interpolate(d, scale_factor=SIZE_DIVISOR, mode="bilinear", align_corners=False)
            return self.mapping(up if c is None else torch.cat([c, up], dim=1))
        first = self.mapping[0]
        if c is None:
            x = conv_of_upsampled(d, first.weight, size) + first.bias[:, None, None]
        else:
            cc = int(c.shape[1])
            x = F.conv2d(c, first.weight[:, :cc], first.bias, padding=1)
            x = x + conv_of_upsampled(d, first.weight[:, cc:], size)
        return self.mapping[1:](x)

    def forward(self, image: torch.Tensor, prm: torch.Tensor, factored: bool = True
                ) -> torch.Tensor:
        """Return enhanced maps sigmoid(logits) in [0,1], [K,1,H,W]."""
        return torch.sigmoid(self.logits(image, prm, factored))


def enhance(
    icn: nn.Module, image: torch.Tensor, prm: torch.Tensor, iterations: int = 3
) -> torch.Tensor:
    """Run ``icn`` ``iterations`` times, feeding each output back as the PRM; return [K,1,H,W]."""
    if iterations < 1:
        raise ConfigError(f"ICN iterations must be >= 1, got {iterations}")
    out = prm if prm.ndim == 4 else prm.unsqueeze(1)
    for _ in range(iterations):
        out = icn(image, out)
    return out
