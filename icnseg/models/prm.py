"""PRM classifier, peak stimulation (training aggregation) and Eq. 1 peak finding (inference).

Conventions shared with the ONNX export (keep them in sync with export/):

* ``G`` (filter "gaussian") is a depthwise 'same' convolution with the fixed kernel
  ``gaussian_kernel(sigma, kernel_size)`` (separable, normalised to sum 1) and ZERO padding,
  i.e. ONNX ``Conv(group=C, pads=k//2)``.
* ``E_eta`` is the mean of ``M_c`` over its h*w pixels (``ReduceMean``).
* A peak is a pixel with ``P_c == MaxPool(window, stride 1, pad window//2)(P_c)`` and
  ``P_c > 0`` of a present class. Plateaus yield one peak per plateau pixel (plain equality, as
  in the exported graph). Order: value descending, ties by flat index ``(c*h + y)*w + x``
  ascending (ONNX ``TopK`` semantics); at most ``max_peaks``.
* The peak ``value`` is ``P_c`` at the peak (what TopK over the peak map returns).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icnseg.errors import ConfigError
from icnseg.models.backbones import build_backbone
from icnseg.models.prm_backprop import backprop_rule, peak_response_maps
from icnseg.settings import PeakConfig  # torch-free home, re-exported here

__all__ = [
    "PRMClassifier",
    "PeakConfig",
    "backprop_rule",
    "class_scores",
    "find_peaks",
    "gaussian_kernel",
    "peak_filter",
    "peak_response_maps",
    "peak_stimulation",
    "present_classes",
]


class PRMClassifier(nn.Module):
    """Fully convolutional classifier: backbone + 1x1 ``classifier`` conv -> class response maps."""

    def __init__(self, backbone_name: str, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone_name = backbone_name
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone_name)
        self.stride = int(self.backbone.stride)
        self.classifier = nn.Conv2d(self.backbone.out_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class response maps [B,C,h,w] for normalised images [B,3,H,W]."""
        return self.classifier(self.backbone(x))


def peak_stimulation(
    crm: torch.Tensor, window: int = 3, upsample: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (class scores [B,C], peak list [N,4] int64 (b,c,y,x)) as the original PRM trains.

    Peaks are local maxima in a ``window`` x ``window`` neighbourhood found like the original
    (-inf padding, max-pool arg-max index equal to the pixel's own index, so a plateau gives
    the first pixel in raster order). A peak counts if its value is >= the median of ALL values
    of its map (the original ``_median_filter``: ``torch.median``, the lower median). The class
    score is the mean of the counted peak values; it is differentiable wrt ``crm`` (true
    gradient: 1/count at each counted peak). ``upsample`` > 1 bilinearly upsamples ``crm``
    first (align_corners=False), the original's sub-pixel peak locating.
    """
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"peak window must be odd and >= 1, got {window}")
    if crm.ndim != 4:
        raise ConfigError(f"crm must be [B,C,h,w], got {tuple(crm.shape)}")
    if upsample > 1:
        crm = F.interpolate(crm, scale_factor=upsample, mode="bilinear", align_corners=False)
    b, c, h, w = crm.shape
    off = window // 2
    with torch.no_grad():
        padded = F.pad(crm.detach(), (off, off, off, off), value=float("-inf"))
        _, indices = F.max_pool2d(padded, window, stride=1, return_indices=True)
        own = torch.arange((h + 2 * off) * (w + 2 * off), device=crm.device)
        own = own.view(h + 2 * off, w + 2 * off)[off : off + h, off : off + w]
        peak = indices == own
        median = crm.detach().flatten(2).median(dim=2).values.view(b, c, 1, 1)
        peak = peak & (crm.detach() >= median)
    mask = peak.to(crm.dtype)
    scores = (crm * mask).flatten(2).sum(2) / mask.flatten(2).sum(2).clamp(min=1.0)
    return scores, torch.nonzero(peak)


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """Return the float32 [size,size] Gaussian G of Eq. 1: outer product of a sum-1 1-D kernel."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ConfigError(f"gaussian kernel needs odd size >= 1 and sigma > 0, got {size}, {sigma}")
    r = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g).astype(np.float32)


def peak_filter(crm: torch.Tensor, cfg: PeakConfig) -> torch.Tensor:
    """Return G(M) for crm [C,h,w] (zero-padded 'same' Gaussian conv or median filter)."""
    m = crm.unsqueeze(0)
    c = crm.shape[0]
    if cfg.filter == "gaussian":
        k = torch.from_numpy(gaussian_kernel(cfg.sigma, cfg.kernel_size)).to(crm)
        weight = k.expand(c, 1, -1, -1)
        return F.conv2d(m, weight, padding=cfg.kernel_size // 2, groups=c)[0]
    s = cfg.median_size
    h, w = crm.shape[-2:]
    cols = F.unfold(m, s, padding=s // 2).view(c, s * s, h, w)
    return cols.median(dim=1).values


def find_peaks(
    crm: torch.Tensor | np.ndarray, present: np.ndarray | torch.Tensor, cfg: PeakConfig
) -> np.ndarray:
    """Return float32 [K,4] peaks (class, y, x, value) of Eq. 1 for crm [C,h,w], present [C]."""
    m = torch.as_tensor(np.asarray(crm) if not torch.is_tensor(crm) else crm)
    m = m.detach().to("cpu", torch.float32)
    if m.ndim != 3:
        raise ConfigError(f"crm must be [C,h,w], got {tuple(m.shape)}")
    pres = torch.as_tensor(np.asarray(present, dtype=bool)).view(-1)
    if pres.numel() != m.shape[0]:
        raise ConfigError(f"present has {pres.numel()} entries for {m.shape[0]} classes")
    with torch.no_grad():
        mean = m.mean(dim=(1, 2), keepdim=True)
        p = (m - peak_filter(m, cfg) - mean).clamp(min=0)
        pooled = F.max_pool2d(p.unsqueeze(0), cfg.window, 1, cfg.window // 2)[0]
        is_peak = (p == pooled) & (p > 0) & pres.view(-1, 1, 1)
        if cfg.min_response is not None:
            is_peak &= m >= cfg.min_response
        if cfg.relative > 0:
            best = (p * is_peak).amax(dim=(1, 2), keepdim=True)
            is_peak &= p >= cfg.relative * best
    flat = is_peak.flatten().numpy()
    vals = p.flatten().numpy()
    idx = np.flatnonzero(flat)
    order = np.lexsort((idx, -vals[idx].astype(np.float64)))[: cfg.max_peaks]
    idx = idx[order]
    _, h, w = m.shape
    out = np.empty((idx.size, 4), dtype=np.float32)
    out[:, 0] = idx // (h * w)
    out[:, 1] = (idx // w) % h
    out[:, 2] = idx % w
    out[:, 3] = vals[idx]
    return out


def class_scores(crm: torch.Tensor, cfg: PeakConfig | None = None) -> torch.Tensor:
    """Return sigmoid(peak-stimulation score): [C] for crm [C,h,w], [B,C] for [B,C,h,w]."""
    cfg = cfg or PeakConfig()
    single = crm.ndim == 3
    scores, _ = peak_stimulation(crm.unsqueeze(0) if single else crm, window=cfg.window)
    probs = torch.sigmoid(scores)
    return probs[0] if single else probs


def present_classes(crm: torch.Tensor, cfg: PeakConfig | None = None) -> np.ndarray:
    """Return bool [C] (or [B,C]): classes whose ``class_scores`` reach ``cfg.score_threshold``."""
    cfg = cfg or PeakConfig()
    return (class_scores(crm, cfg) >= cfg.score_threshold).detach().cpu().numpy()
