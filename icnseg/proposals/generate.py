"""Built-in mask proposals: selective-search style hierarchical grouping of superpixels.

One Felzenszwalb over-segmentation is the shared superpixel map. It runs on the image shrunk
by ``segment_scale`` (Felzenszwalb is the largest single cost), the grouping statistics are taken
there, and the superpixel boundaries are then refined at full size (each boundary pixel
joins the neighbouring superpixel of the closest mean colour), so masks stay sharp. Optional
coarser starting partitions are built by merging its superpixels (graph-based merging on the
region adjacency graph), so every proposal of every strategy is an exact union of the shared
superpixels. From each starting partition and each strategy (colour space + similarity
terms) adjacent regions are merged by similarity until one region is left, all runs at once
in rounds of mutually most similar pairs (``grouping``); every region seen is a proposal.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from icnseg.errors import ConfigError, InputError
from icnseg.proposals.boundary import boundary_pixels, move_to_closest
from icnseg.proposals.felzenszwalb import felzenszwalb
from icnseg.proposals.grouping import GroupingRun, group_runs
from icnseg.proposals.types import Proposals


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of the built-in proposal generator."""

    scale: float = 100.0  # Felzenszwalb scale of the shared (finest) superpixel map
    sigma: float = 0.8  # Gaussian pre-smoothing of the over-segmentation
    min_superpixel: float = 1 / 1500  # smallest superpixel, as a fraction of the image area
    # The over-segmentation runs on the image shrunk by this factor (at most to max_side,
    # never below min_side), its boundaries refined at full size: Felzenszwalb is the largest
    # stage, and its cost grows faster than the pixels. On the synthetic val set the
    # oracle mAP^r does not drop from 72 px at a 96-px image up to 256 px at 1024 px
    # (benchmarks/results/proposals_cpu.md).
    segment_scale: float = 0.625
    max_side: int | None = 256
    min_side: int = 72
    refine_passes: int = 2  # boundary refinement passes at full size (each moves <= 1 px)
    # Starting partitions: graph-based merging of the superpixels with these k values (on
    # mean Lab colour distances); 0 means "start from the superpixels themselves". Adding
    # e.g. 40.0 gives more, coarser-started proposals (no gain on the val set, 2x grouping).
    partition_k: tuple[float, ...] = (0.0,)
    # Grouping strategies "<colour space>:<terms>"; spaces rgb|lab|hsv, terms c=colour
    # histogram intersection, s=size (small first), f=fill (compact bounding box first).
    strategies: tuple[str, ...] = ("lab:csf", "hsv:csf", "lab:sf")
    colour_bins: int = 25  # histogram bins per colour channel
    min_area: float = 1 / 2000  # drop proposals smaller than this fraction of the image
    max_proposals: int | None = None  # keep the first N (None: all)


def generate_proposals(image: np.ndarray, cfg: ProposalConfig | None = None) -> Proposals:
    """Selective-search style proposals of an RGB uint8 image [H, W, 3], with membership."""
    cfg = cfg or ProposalConfig()
    image = _check_image(image)
    _check_config(cfg)
    h, w = image.shape[:2]
    small = _shrink(image, cfg)
    sp_small = _oversegment(small, cfg)
    n_sp = int(sp_small.max()) + 1
    # Grouping statistics at the over-segmentation size: sizes and boxes in its pixels.
    sizes = np.bincount(sp_small.ravel(), minlength=n_sp).astype(np.float64)
    bboxes = _bboxes(sp_small, n_sp)
    pairs = _adjacent_pairs(sp_small, n_sp)
    spaces = {s.split(":")[0] for s in cfg.strategies}
    hists = {space: _histograms(_convert(small, space), sp_small, n_sp, cfg.colour_bins)
             for space in spaces}
    lab_mean = _mean_colour(small, sp_small, n_sp)
    sp = _refine(image, sp_small, lab_mean, cfg.refine_passes)

    found: list[np.ndarray | None] = [np.eye(n_sp, dtype=bool)]
    runs, slots = [], []
    for k in cfg.partition_k:
        groups = _graph_merge(lab_mean, sizes, pairs, k) if k > 0 else np.arange(n_sp)
        g_sizes, g_boxes, g_pairs, g_hists = _group_stats(groups, sizes, bboxes, pairs, hists)
        if k > 0:
            found.append(groups[None, :] == np.arange(len(g_sizes))[:, None])
        for strategy in cfg.strategies:
            space, terms = strategy.split(":")
            runs.append(GroupingRun(groups, g_hists[space], g_sizes, g_boxes, g_pairs, terms,
                                    small.shape[0] * small.shape[1]))
            slots.append(len(found))
            found.append(None)
    for slot, rows in zip(slots, group_runs(runs), strict=True):
        found[slot] = rows

    member = np.concatenate(found, axis=0)
    full_sizes = np.bincount(sp.ravel(), minlength=n_sp).astype(np.int64)
    areas = member.astype(np.int64) @ full_sizes
    member = member[(areas >= min(cfg.min_area * h * w, h * w)) & (areas > 0)]
    member = _unique_rows(member)
    if cfg.max_proposals is not None:
        member = member[: cfg.max_proposals]
    return Proposals.from_membership(sp, member, check=False)


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 image (gray [H, W] is stacked to 3 channels)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise InputError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} "
                         f"{image.shape}")
    return np.ascontiguousarray(image)


def _check_config(cfg: ProposalConfig) -> None:
    """Reject unknown strategies or empty settings early with a ConfigError."""
    if not 0.0 < cfg.segment_scale <= 1.0:
        raise ConfigError(f"ProposalConfig.segment_scale must be in (0, 1], got "
                          f"{cfg.segment_scale}")
    if cfg.min_side < 1 or cfg.refine_passes < 0:
        raise ConfigError("ProposalConfig.min_side must be >= 1 and refine_passes >= 0")
    if not cfg.strategies or not cfg.partition_k:
        raise ConfigError("ProposalConfig needs at least one strategy and one partition_k")
    for strategy in cfg.strategies:
        space, _, terms = strategy.partition(":")
        if space not in ("rgb", "lab", "hsv") or not terms or set(terms) - set("csf"):
            raise ConfigError(f"bad proposal strategy {strategy!r} (want e.g. 'lab:csf')")


def _shrink(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """The image at the over-segmentation size (``segment_scale``, within min/max side)."""
    h, w = image.shape[:2]
    side = max(h, w) * cfg.segment_scale
    if cfg.max_side is not None:
        side = min(side, cfg.max_side)
    side = max(side, min(cfg.min_side, max(h, w)))
    if side >= max(h, w):
        return image
    f = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA)


def _oversegment(small: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """Felzenszwalb superpixels of the (shrunk) image, int32 labels 0..S-1."""
    sh, sw = small.shape[:2]
    min_size = max(1, int(round(cfg.min_superpixel * sh * sw)))
    return felzenszwalb(small, cfg.scale, cfg.sigma, min_size)


def _refine(image: np.ndarray, sp_small: np.ndarray, mean: np.ndarray, passes: int
            ) -> np.ndarray:
    """Superpixels at full size: the coarse labels scaled up (nearest), then every pixel on a
    label boundary takes the label, among its own and its 4 neighbours', whose mean Lab colour
    (``mean`` [S, 3], from the over-segmentation) is closest to its own, ``passes`` times."""
    h, w = image.shape[:2]
    if sp_small.shape == (h, w):
        return sp_small
    sp = cv2.resize(sp_small, (w, h), interpolation=cv2.INTER_NEAREST)
    rgb = image.reshape(-1, 3)
    mean = mean.astype(np.float32)
    for _ in range(passes):
        at = boundary_pixels(sp)
        if len(at) == 0:
            break
        # Lab of the boundary pixels only (a few % of the image at large sizes)
        lab = cv2.cvtColor(rgb[at][:, None], cv2.COLOR_RGB2LAB)[:, 0].astype(np.float32)
        move_to_closest(sp, at, lab, mean)
    return sp


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive int32 labels 0..S-1 (labels are non-negative integers)."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.bincount(labels.ravel()) > 0
    lut = (np.cumsum(present) - 1).astype(np.int32)
    return lut[labels]


def _convert(image: np.ndarray, space: str) -> np.ndarray:
    """The image in a colour space, every channel scaled to 0..255."""
    if space == "lab":
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    if space == "hsv":
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # OpenCV hue is 0..179
        hsv[..., 0] = (hsv[..., 0].astype(np.uint16) * 255 // 179).astype(np.uint8)
        return hsv
    return image


def _histograms(image: np.ndarray, sp: np.ndarray, n_sp: int, bins: int) -> np.ndarray:
    """Per-superpixel colour histogram counts, float64 [S, 3*bins]."""
    binned = image.astype(np.int64) * bins // 256 + np.arange(3) * bins
    index = sp[..., None].astype(np.int64) * (3 * bins) + binned
    counts = np.bincount(index.ravel(), minlength=n_sp * 3 * bins)
    return counts.reshape(n_sp, 3 * bins).astype(np.float64)


def _mean_colour(image: np.ndarray, sp: np.ndarray, n_sp: int) -> np.ndarray:
    """Mean Lab colour per superpixel, float64 [S, 3]."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    size = np.bincount(sp.ravel(), minlength=n_sp)
    sums = np.stack([np.bincount(sp.ravel(), lab[:, c], minlength=n_sp) for c in range(3)], 1)
    return sums / np.maximum(size, 1)[:, None]


def _bboxes(sp: np.ndarray, n_sp: int) -> np.ndarray:
    """Bounding box (y0, x0, y1, x1), end exclusive, of every superpixel, float64 [S, 4]."""
    boxes = np.zeros((n_sp, 4))
    for i, sl in enumerate(ndimage.find_objects(sp + 1, max_label=n_sp)):
        if sl is not None:
            boxes[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return boxes


def _adjacent_pairs(sp: np.ndarray, n_sp: int) -> np.ndarray:
    """Unique 4-connected neighbouring superpixel pairs (a < b), int64 [E, 2]."""
    a = np.concatenate([sp[:, :-1].ravel(), sp[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([sp[:, 1:].ravel(), sp[1:, :].ravel()]).astype(np.int64)
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    code = np.unique(lo * n_sp + hi)
    return np.stack([code // n_sp, code % n_sp], axis=1)


def _group_stats(groups: np.ndarray, sizes: np.ndarray, boxes: np.ndarray, pairs: np.ndarray,
                 hists: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Sizes, boxes, adjacent pairs and histograms of the groups of a starting partition
    (``groups``: group id per superpixel); the superpixels' own when every group is one."""
    n = int(groups.max()) + 1
    if n == len(groups):  # the identity partition (k = 0)
        return sizes, boxes, pairs, hists
    g_pairs = np.unique(np.sort(groups[pairs], axis=1), axis=0)
    g_pairs = g_pairs[g_pairs[:, 0] != g_pairs[:, 1]]
    g_boxes = np.stack([_group_reduce(np.minimum, boxes[:, 0], groups, n),
                        _group_reduce(np.minimum, boxes[:, 1], groups, n),
                        _group_reduce(np.maximum, boxes[:, 2], groups, n),
                        _group_reduce(np.maximum, boxes[:, 3], groups, n)], 1)
    g_hists = {}
    for space, hist in hists.items():
        g_hists[space] = np.zeros((n, hist.shape[1]))
        np.add.at(g_hists[space], groups, hist)
    return np.bincount(groups, sizes, minlength=n), g_boxes, g_pairs, g_hists


def _group_reduce(op: np.ufunc, values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Reduce ``values`` per group with a ufunc (min/max)."""
    init = np.inf if op is np.minimum else -np.inf
    out = np.full(n, init)
    op.at(out, groups, values)
    return out


def _graph_merge(colour: np.ndarray, sizes: np.ndarray, pairs: np.ndarray, k: float
                 ) -> np.ndarray:
    """Felzenszwalb's merge criterion on the superpixel graph; returns a group id per superpixel."""
    n = len(sizes)
    parent = np.arange(n)
    internal = np.zeros(n)
    size = sizes.copy()
    weight = np.linalg.norm(colour[pairs[:, 0]] - colour[pairs[:, 1]], axis=1)
    # Sizes count in mean superpixels, so k is in Lab units for a one-superpixel region.
    size = size / max(size.mean(), 1.0)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for e in np.argsort(weight, kind="stable"):
        a, b = find(pairs[e, 0]), find(pairs[e, 1])
        if a != b and weight[e] <= min(internal[a] + k / size[a], internal[b] + k / size[b]):
            parent[b] = a
            size[a] += size[b]
            internal[a] = weight[e]  # edges come sorted, so this is the largest in the tree
    roots = np.array([find(i) for i in range(n)])
    return _relabel(roots)


def _unique_rows(member: np.ndarray) -> np.ndarray:
    """Drop repeated membership rows (identical masks), keeping first occurrences in order."""
    if len(member) == 0:
        return member
    packed = np.packbits(member, axis=1)
    _, first = np.unique(packed, axis=0, return_index=True)
    return member[np.sort(first)]
