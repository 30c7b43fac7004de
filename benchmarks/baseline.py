"""The baseline: Algorithm 1 the way the original PRM code runs it, for ``icnseg bench``.

A Segmenter: same model, inputs and outputs as ``icnseg.eager`` (checked by the bench), but
computed like the original code: eager PyTorch, one forward + one backward per peak, the ICN
run per instance, every (instance, proposal) score one at a time in a Python loop, and
greedy NMS in Python computing each IoU when it is needed. Only the "icn" scoring rule with
the "dilate" background (the shipped defaults) is implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from icnseg.base_segmenter import SegmenterBase
from icnseg.errors import ConfigError
from icnseg.instance import Instance
from icnseg.matching import background_template, contour
from icnseg.models.icn import enhance
from icnseg.models.prm_backprop import backprop_rule
from icnseg.postprocess import binary_maps, instance_score, instances_from, rescale_instances
from icnseg.segmenter import Clock, Prepared, Stages, no_clock
from icnseg.settings import SegmentConfig


def loop_maps(classifier: torch.nn.Module, x: torch.Tensor, peaks: np.ndarray,
              rule: str) -> torch.Tensor:
    """R [K,H,W] the original PRM way: per peak one forward and one backward."""
    maps = []
    with torch.enable_grad(), backprop_rule(classifier, rule):
        for c, y, xx in np.asarray(peaks)[:, :3].round().astype(np.int64):
            xi = x.detach().clone().requires_grad_(True)
            crm = classifier(xi)
            seed = torch.zeros_like(crm)
            seed[0, c, y, xx] = 1.0
            (grad,) = torch.autograd.grad(crm, xi, grad_outputs=seed)
            maps.append(grad[0].sum(0).clamp(min=0))
    h, w = x.shape[-2:]
    return torch.stack(maps) if maps else x.new_zeros((0, h, w))


def loop_scores(v: np.ndarray, edge: np.ndarray, background: np.ndarray, masks: np.ndarray,
                alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Eq. 5 ("icn") score of every (instance, proposal), one pair at a time, float64 [K, N]."""
    k, n = len(v), len(masks)
    scores = np.zeros((k, n))
    for i in range(k):
        edge_total = np.count_nonzero(edge[i])
        for j in range(n):
            p = masks[j]
            area = np.count_nonzero(p)
            s = 0.0
            if area:
                s += alpha * np.count_nonzero(v[i] & p) / area
                s -= gamma * np.count_nonzero(background[i] & p) / area
            if edge_total:
                s += beta * np.count_nonzero(edge[i] & p) / edge_total
            scores[i, j] = s
    return scores


def loop_argmax(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best proposal per row in a Python loop: (index, quality), -1/-inf when none is finite."""
    index = np.full(len(scores), -1, np.int64)
    quality = np.full(len(scores), -np.inf)
    for i, row in enumerate(scores):
        for j, s in enumerate(row):
            if np.isfinite(s) and s > quality[i]:
                index[i], quality[i] = j, s
    return index, quality


def loop_nms(masks: np.ndarray, scores: np.ndarray, classes: np.ndarray,
             iou_threshold: float) -> np.ndarray:
    """Greedy class-aware mask NMS in Python; each IoU computed when a pair is visited."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    removed = [False] * len(scores)
    keep = []
    for a, i in enumerate(order):
        if removed[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if removed[j] or classes[j] != classes[i]:
                continue
            inter = np.count_nonzero(masks[i] & masks[j])
            union = np.count_nonzero(masks[i] | masks[j])
            iou = inter / union if union else 0.0
            identical = inter == np.count_nonzero(masks[i]) == np.count_nonzero(masks[j])
            if iou >= iou_threshold or identical:
                removed[j] = True
    return np.asarray(keep, dtype=np.int64)


def check_supported(cfg: SegmentConfig) -> None:
    """ConfigError unless ``cfg`` uses what the baseline implements."""
    if cfg.match.scoring != "icn" or cfg.match.background != "dilate":
        raise ConfigError("the baseline implements scoring 'icn' with the 'dilate' background "
                          f"only, not {cfg.match.scoring!r} / {cfg.match.background!r}")


class BaselineModel(SegmenterBase):
    """The original code's way of running an EagerModel (the ``baseline`` of the bench)."""

    backend = "baseline"

    def __init__(self, model: Any) -> None:
        """Wrap a loaded EagerModel (same weights, inputs and settings)."""
        self.model = model
        self.classes, self.input_size = model.classes, model.input_size
        self.mean, self.std, self.source = model.mean, model.std, model.source
        self.settings = model.settings

    def check_config(self, cfg: SegmentConfig) -> None:
        """ConfigError unless ``cfg`` is what the baseline implements."""
        check_supported(cfg)
        self.model.check_config(cfg)

    def infer(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock = no_clock,
              keep_maps: bool = False) -> Stages:
        """Peaks, naive PRMs (one backward per peak) and ICN maps (one instance at a time)."""
        model = self.model
        x = torch.from_numpy(prepared.x)
        crm, conf, peaks = model.forward_peaks(x, cfg, clock)  # the same one forward
        with clock("prm_backward"):
            prm = loop_maps(model.classifier, x, peaks, cfg.rule).detach()
        stages = Stages(prepared.model_input, conf, peaks, prm.numpy(), crm=crm.numpy())
        if cfg.iterations > 0 and len(peaks):
            with clock("icn"), torch.no_grad():
                maps = [enhance(model.icn, x, prm[i][None, None], cfg.iterations)[0, 0]
                        for i in range(len(peaks))]
            stages.enhanced = torch.stack(maps).numpy()
        return stages

    def select(self, prepared: Prepared, stages: Stages, cfg: SegmentConfig,
               clock: Clock = no_clock) -> list[Instance]:
        """Matching, arg-max and NMS one item at a time; masks at the image's size."""
        check_supported(cfg)
        proposals = self.proposals_of(prepared, cfg)
        if not len(stages.peaks) or not len(proposals):
            return []
        m = cfg.match
        with clock("binarise"):  # at the proposals' (the image's) size, like every backend
            v = binary_maps(stages, cfg, proposals.shape)
            edge = np.concatenate([contour(vi, m.contour_width) for vi in v])
            background = np.concatenate([background_template(vi, m) for vi in v])
        with clock("matcher"):
            scores = loop_scores(v, edge, background, proposals.masks, m.alpha, m.beta, m.gamma)
            idx, quality = loop_argmax(scores)
        with clock("nms"):
            cls = stages.peaks[:, 0].astype(int)
            score = instance_score(stages.class_conf[cls], quality)
            cand = [i for i in range(len(cls))
                    if np.isfinite(quality[i]) and quality[i] >= cfg.min_quality]
            kept = loop_nms(proposals.masks[idx[cand]], score[cand], cls[cand], m.nms_iou)
            keep = sorted((cand[i] for i in kept), key=lambda i: -score[i])
        instances = instances_from(stages, proposals, self.classes, np.asarray(keep, np.int64),
                                   idx, cls, score, quality)
        with clock("postprocess"):
            return rescale_instances(instances, prepared.image.shape[:2])
