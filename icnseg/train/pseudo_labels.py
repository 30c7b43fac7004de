"""Stage-2 training targets: naive PRMs of a frozen classifier, paired with pseudo masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icnseg.errors import ConfigError
from icnseg.nms import mask_iou
from icnseg.postprocess import minmax


@dataclass(frozen=True)
class Target:
    """One ICN training example: image index, its peak, naive PRM and target mask."""

    image_index: int
    peak: np.ndarray  # (class, y, x, value)
    prm: np.ndarray  # float16 [H, W], raw naive PRM
    mask: np.ndarray  # bool [H, W], pseudo label (or instance-saliency mask)


def naive_prms(
    classifier, image: np.ndarray, present: np.ndarray | None, peak_cfg, rule: str, mean, std
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks (Eq. 1) of the classes in ``present`` and their naive PRMs (Eq. 2) for one image.

    ``present`` None: the classes the classifier predicts (``peak_cfg.score_threshold``).
    """
    import torch

    from icnseg.data.transforms import normalize
    from icnseg.models.prm import find_peaks, present_classes
    from icnseg.models.prm_backprop import peak_response_maps

    x = torch.from_numpy(normalize(image, mean, std))[None]
    with torch.no_grad():
        crm = classifier(x)[0]
    if present is None:
        present = present_classes(crm, peak_cfg)
    peaks = find_peaks(crm, present, peak_cfg)
    if len(peaks) == 0:
        return peaks, np.zeros((0,) + image.shape[:2], np.float32)
    prm = peak_response_maps(classifier, x, peaks, rule=rule)
    return peaks, prm.detach().numpy().astype(np.float32)


def prm_blob(prm: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Naive PRMs [K,H,W] as filled blobs: Gaussian-smoothed, max-scaled, thresholded."""
    import cv2
    from scipy import ndimage

    out = np.zeros(prm.shape, bool)
    for i, r in enumerate(minmax(prm)):
        b = cv2.GaussianBlur(r, (0, 0), sigma) if sigma > 0 else r
        out[i] = ndimage.binary_fill_holes(b >= threshold * max(float(b.max()), 1e-12))
    return out


def proposal_targets(prm: np.ndarray, proposals, match_cfg, k: int, blur: float = 0.0,
                     blob_threshold: float = 0.1) -> list[np.ndarray]:
    """Pseudo label per PRM: union of its top-``k`` matched proposals (paper 3.2).

    ``blur`` > 0 matches a filled blob of the smoothed PRM instead of the raw map: a naive PRM
    lights up object outlines, and Eq. 5 then prefers fragments inside the outline.
    """
    from icnseg.matching import match_scores, pseudo_label

    if len(proposals) == 0:
        return [np.zeros(prm.shape[1:], bool) for _ in prm]
    v = prm_blob(prm, blur, blob_threshold) if blur > 0 else minmax(prm)
    scores = match_scores(v, proposals, match_cfg, prm=prm)
    return [pseudo_label(scores[i], proposals.masks, k=k) for i in range(len(prm))]


def saliency_targets(prm: np.ndarray, masks: np.ndarray, threshold: float = 0.2) -> list[int]:
    """Index of the instance mask each PRM pairs with by IoU (paper 3.2 variant); -1 if none."""
    if len(masks) == 0:
        return [-1] * len(prm)
    iou = mask_iou(minmax(prm) >= threshold, masks)
    best = iou.argmax(1)
    return [int(j) if iou[i, j] > 0 else -1 for i, j in enumerate(best)]


def check_label_source(labels: str, saliency_dir: str | None) -> None:
    """Validate the stage-2 label source flags."""
    if labels not in ("proposals", "saliency"):
        raise ConfigError(f"--labels must be 'proposals' or 'saliency' (got {labels!r})")
    if labels == "saliency" and not saliency_dir:
        raise ConfigError("--labels saliency needs a directory of instance masks (VOC layout)")
