"""Hierarchical grouping of adjacent regions, in parallel rounds, for several runs at once.

Selective search merges the most similar pair of adjacent regions until one is left, once per
starting partition and grouping strategy; every merged region is a proposal. Done one merge
at a time, the Python overhead of each step is most of the cost. Here every round merges all
*mutually best* adjacent pairs at once (each is the other's most similar neighbour), with
the similarities of the round's start: the most similar pair overall is always among them,
and pairs far apart do not change each other's similarities, so the rounds make the same
kind of hierarchy as the greedy order in a few dozen vectorised steps instead of one step per
merge. The runs share the rounds: their regions are numbered in one graph with no edges
between runs. Merges are listed round by round, the most similar first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupingRun:
    """One run: the starting regions and the similarity terms to merge them by."""

    groups: np.ndarray  # int [S]: starting region of every superpixel, 0..G-1
    hist: np.ndarray  # float [G, D]: colour histogram counts of every region
    size: np.ndarray  # float [G]: region sizes (pixels)
    box: np.ndarray  # float [G, 4]: region boxes (y0, x0, y1, x1), end exclusive
    pairs: np.ndarray  # int [E, 2]: adjacent region pairs (a < b)
    terms: str  # "c" colour histogram intersection, "s" size, "f" fill
    area: float  # image area the size and fill terms are relative to


def group_runs(runs: list[GroupingRun]) -> list[np.ndarray]:
    """Superpixel membership bool [M_r, S] of every merged region of every run, in merge
    order (round by round, most similar first)."""
    if not runs:
        return []
    counts = [len(r.size) for r in runs]
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n, d = int(start[-1]), runs[0].hist.shape[1]
    run_of = np.repeat(np.arange(len(runs)), counts)
    # One feature row per region: normalised histogram [:d], size [d], box (y0, x0, y1, x1)
    # [d+1:], so a region's statistics are read and written with one gather each.
    feat = np.zeros((n, d + 5))
    for r, lo in zip(runs, start, strict=False):
        feat[lo:lo + len(r.size), :d] = r.hist / np.maximum(3 * r.size, 1)[:, None]  # sums to 1
        feat[lo:lo + len(r.size), d] = r.size
        feat[lo:lo + len(r.size), d + 1:] = r.box
    weights = np.array([[t in r.terms for t in "csf"] for r in runs], dtype=np.float64)[run_of]
    area = np.array([float(r.area) for r in runs])[run_of]
    edges = np.concatenate([np.asarray(r.pairs, np.int64).reshape(-1, 2) + lo
                            for r, lo in zip(runs, start, strict=False)])
    a, b = edges[:, 0], edges[:, 1]
    label = np.arange(n)  # current region of every starting region
    merged_run, merged_rows = [], []
    while len(a):
        s = _similarity(feat, d, weights[a], area[a], a, b)
        rank = np.empty(len(s), np.int64)
        rank[np.argsort(-s, kind="stable")] = np.arange(len(s))  # 0 = most similar
        best = np.full(n, len(s))
        np.minimum.at(best, a, rank)
        np.minimum.at(best, b, rank)
        e = np.flatnonzero((best[a] == rank) & (best[b] == rank))
        e = e[np.argsort(rank[e])]
        r, c = a[e], b[e]  # r < c: c joins r
        fr, fc = feat[r], feat[c]
        sr, sc = fr[:, d:d + 1], fc[:, d:d + 1]
        # The merged region's histogram is the size-weighted mean of its parts'.
        feat[r, :d] = (fr[:, :d] * sr + fc[:, :d] * sc) / (sr + sc)
        feat[r, d] = sr[:, 0] + sc[:, 0]
        feat[r, d + 1:d + 3] = np.minimum(fr[:, d + 1:d + 3], fc[:, d + 1:d + 3])
        feat[r, d + 3:] = np.maximum(fr[:, d + 3:], fc[:, d + 3:])
        to = np.arange(n)
        to[c] = r
        label = to[label]
        merged_run.append(run_of[r])
        merged_rows.append(label[None, :] == r[:, None])
        a, b = to[a], to[b]
        code = np.unique(np.minimum(a, b) * n + np.maximum(a, b))
        a, b = code // n, code % n
        keep = a != b
        a, b = a[keep], b[keep]
    which = np.concatenate(merged_run) if merged_run else np.zeros(0, np.int64)
    rows = np.concatenate(merged_rows) if merged_rows else np.zeros((0, n), dtype=bool)
    return [rows[which == k][:, lo + np.asarray(run.groups)]
            for k, (run, lo) in enumerate(zip(runs, start, strict=False))]


def _similarity(feat: np.ndarray, d: int, weights: np.ndarray, area: np.ndarray,
                i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Selective-search similarity of regions i and j: colour histogram intersection, size
    (small first) and fill (compact box first) terms, weighted 0/1 per run."""
    fi, fj = feat[i], feat[j]
    colour = np.minimum(fi[:, :d], fj[:, :d]).sum(axis=-1)
    small = 1.0 - (fi[:, d] + fj[:, d]) / area
    ext = np.maximum(fi[:, d + 3:], fj[:, d + 3:]) - np.minimum(fi[:, d + 1:d + 3],
                                                              fj[:, d + 1:d + 3])
    fill = 1.0 - (ext[:, 0] * ext[:, 1] - fi[:, d] - fj[:, d]) / area
    return colour * weights[:, 0] + small * weights[:, 1] + fill * weights[:, 2]
