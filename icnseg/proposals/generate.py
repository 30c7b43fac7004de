"""Built-in mask proposals: selective-search style hierarchical grouping of superpixels.

One Felzenszwalb over-segmentation is the shared superpixel map. It runs on the image shrunk
by ``segment_scale`` (Felzenszwalb is most of the cost), the grouping statistics are taken
there, and the superpixel boundaries are then refined at full size (each boundary pixel
joins the neighbouring superpixel of the closest mean colour), so masks stay sharp. Coarser
starting partitions
are built by merging its superpixels (graph-based merging on the region adjacency graph), so
every proposal of every strategy is an exact union of the shared superpixels. From each
starting partition and each strategy (colour space + similarity terms) adjacent regions are
merged greedily by similarity until one region is left; every region seen is a proposal.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb

from icnseg.errors import ConfigError, InputError
from icnseg.proposals.types import Proposals


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of the built-in proposal generator."""

    scale: float = 100.0  # Felzenszwalb scale of the shared (finest) superpixel map
    sigma: float = 0.8  # Gaussian pre-smoothing of the over-segmentation
    min_superpixel: float = 1 / 1500  # smallest superpixel, as a fraction of the image area
    # The over-segmentation runs on the image shrunk by this factor (at most to max_side,
    # never below min_side), its boundaries refined at full size: Felzenszwalb dominates the
    # run time, and its cost grows with the pixels.
    segment_scale: float = 0.625
    max_side: int | None = 320
    min_side: int = 96
    refine_passes: int = 2  # boundary refinement passes at full size (each moves <= 1 px)
    # Extra starting partitions: graph-based merging of the superpixels with these k values
    # (on mean Lab colour distances); 0 means "start from the superpixels themselves".
    partition_k: tuple[float, ...] = (0.0, 40.0)
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
    sp_small = _relabel(_oversegment(small, cfg))
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

    found = [np.eye(n_sp, dtype=bool)]
    for k in cfg.partition_k:
        groups = _graph_merge(lab_mean, sizes, pairs, k) if k > 0 else np.arange(n_sp)
        n_groups = int(groups.max()) + 1
        onehot = np.zeros((n_groups, n_sp), dtype=bool)
        onehot[groups, np.arange(n_sp)] = True
        g_pairs = np.unique(np.sort(groups[pairs], axis=1), axis=0)
        g_pairs = g_pairs[g_pairs[:, 0] != g_pairs[:, 1]]
        g_sizes = onehot.astype(np.float64) @ sizes
        g_boxes = np.stack([_group_reduce(np.minimum, bboxes[:, 0], groups, n_groups),
                            _group_reduce(np.minimum, bboxes[:, 1], groups, n_groups),
                            _group_reduce(np.maximum, bboxes[:, 2], groups, n_groups),
                            _group_reduce(np.maximum, bboxes[:, 3], groups, n_groups)], 1)
        if k > 0:
            found.append(onehot)
        for strategy in cfg.strategies:
            space, terms = strategy.split(":")
            g_hist = onehot.astype(np.float64) @ hists[space]
            found.append(_hierarchy(onehot, g_hist, g_sizes, g_boxes, g_pairs, terms,
                                    small.shape[0] * small.shape[1]))

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
    """Felzenszwalb superpixels of the (shrunk) image."""
    sh, sw = small.shape[:2]
    min_size = max(1, int(round(cfg.min_superpixel * sh * sw)))
    return felzenszwalb(small, scale=cfg.scale, sigma=cfg.sigma, min_size=min_size)


def _refine(image: np.ndarray, sp_small: np.ndarray, mean: np.ndarray, passes: int
            ) -> np.ndarray:
    """Superpixels at full size: the coarse labels scaled up (nearest), then every pixel on a
    label boundary takes the label, among its own and its 4 neighbours', whose mean Lab colour
    (``mean`` [S, 3], from the over-segmentation) is closest to its own, ``passes`` times."""
    h, w = image.shape[:2]
    if sp_small.shape == (h, w):
        return sp_small
    sp = cv2.resize(sp_small, (w, h), interpolation=cv2.INTER_NEAREST)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean = mean.astype(np.float32)
    for _ in range(passes):
        edge = np.zeros((h, w), bool)
        dx = sp[:, 1:] != sp[:, :-1]
        dy = sp[1:, :] != sp[:-1, :]
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        edge[1:, :] |= dy
        edge[:-1, :] |= dy
        ys, xs = np.nonzero(edge)
        if len(ys) == 0:
            break
        # candidates of the boundary pixels: own, up, down, left, right (clamped at the border)
        cand = np.stack([sp[ys, xs], sp[np.maximum(ys - 1, 0), xs],
                         sp[np.minimum(ys + 1, h - 1), xs], sp[ys, np.maximum(xs - 1, 0)],
                         sp[ys, np.minimum(xs + 1, w - 1)]])
        dist = ((mean[cand] - lab[ys, xs][None]) ** 2).sum(axis=-1)
        # ties keep the pixel's own label (candidate 0): argmin takes the first minimum
        sp = sp.copy()
        sp[ys, xs] = cand[dist.argmin(axis=0), np.arange(len(ys))]
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


def _hierarchy(member: np.ndarray, hist: np.ndarray, size: np.ndarray, box: np.ndarray,
               pairs: np.ndarray, terms: str, area: int) -> np.ndarray:
    """Greedy merging of the most similar adjacent regions; membership of every merge [G-1, S]."""
    n = len(size)
    size = size.copy()
    y0, x0, y1, x1 = (box[:, i].copy() for i in range(4))
    use_c, use_s, use_f = "c" in terms, "s" in terms, "f" in terms
    hist = hist / np.maximum(3 * size, 1)[:, None]  # each row sums to 1

    def similarity(i: np.ndarray | int, j: np.ndarray) -> np.ndarray:
        s = np.minimum(hist[i], hist[j]).sum(axis=-1) if use_c else np.zeros(len(j))
        if use_s:
            s += 1.0 - (size[i] + size[j]) / area
        if use_f:
            bh = np.maximum(y1[i], y1[j]) - np.minimum(y0[i], y0[j])
            bw = np.maximum(x1[i], x1[j]) - np.minimum(x0[i], x0[j])
            s += 1.0 - (bh * bw - size[i] - size[j]) / area
        return s

    sim = np.full((n, n), -np.inf)
    if len(pairs):
        s = similarity(pairs[:, 0], pairs[:, 1])
        sim[pairs[:, 0], pairs[:, 1]] = s
        sim[pairs[:, 1], pairs[:, 0]] = s
    # Row maxima are cached so each merge touches only the rows of the merged pair's neighbours.
    row_arg = sim.argmax(axis=1)
    row_max = sim[np.arange(n), row_arg]
    merges = []
    for _ in range(n - 1):
        r = int(row_max.argmax())
        if row_max[r] == -np.inf:
            break
        c = int(row_arg[r])
        merges.append((r, c))
        # The merged region's histogram is the size-weighted mean of its parts'.
        hist[r] = (hist[r] * size[r] + hist[c] * size[c]) / (size[r] + size[c])
        size[r] += size[c]
        y0[r], x0[r] = min(y0[r], y0[c]), min(x0[r], x0[c])
        y1[r], x1[r] = max(y1[r], y1[c]), max(x1[r], x1[c])
        nb = np.flatnonzero(np.maximum(sim[r], sim[c]) > -np.inf)
        nb = nb[(nb != r) & (nb != c)]
        sim[r] = sim[c] = -np.inf
        sim[:, r] = sim[:, c] = -np.inf
        row_max[c] = row_max[r] = -np.inf
        if len(nb) == 0:
            continue
        s = similarity(r, nb)
        sim[r, nb] = s
        sim[nb, r] = s
        best = s.argmax()
        row_arg[r], row_max[r] = nb[best], s[best]
        stale = (row_arg[nb] == r) | (row_arg[nb] == c)
        better = ~stale & (s > row_max[nb])
        row_max[nb[better]] = s[better]
        row_arg[nb[better]] = r
        rows = nb[stale]
        if len(rows):
            row_arg[rows] = sim[rows].argmax(axis=1)
            row_max[rows] = sim[rows, row_arg[rows]]
    out = np.empty((len(merges), member.shape[1]), dtype=bool)
    member = member.copy()
    for m, (r, c) in enumerate(merges):
        member[r] |= member[c]
        out[m] = member[r]
    return out


def _unique_rows(member: np.ndarray) -> np.ndarray:
    """Drop repeated membership rows (identical masks), keeping first occurrences in order."""
    if len(member) == 0:
        return member
    packed = np.packbits(member, axis=1)
    _, first = np.unique(packed, axis=0, return_index=True)
    return member[np.sort(first)]
