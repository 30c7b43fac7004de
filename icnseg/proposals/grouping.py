"""Hierarchical grouping of adjacent regions, in parallel rounds, for several runs at once.

Selective search merges the most similar pair of adjacent regions until one is left, once per
starting partition and grouping strategy; every merged region is a proposal. Done one merge
at a time, the Python overhead of each step is most of the cost. Here every round merges all
*mutually best* adjacent pairs at once (each is the other's most similar neighbour), with
the similarities of the round's start: the most similar pair overall is always among them,
and pairs far apart do not change each other's similarities, so the rounds make the same
kind of hierarchy as the greedy order in a few dozen rounds instead of one step per merge.
The runs share the rounds: their regions are numbered in one graph with no edges between
runs. Merges are listed round by round, the most similar first. The rounds run compiled
(numba): as numpy calls, their fixed cost per call was most of the time at small sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icnseg.jit import jit


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
    rows, which = _rounds(feat, d, weights, area, edges, run_of)
    return [rows[which == k][:, lo + np.asarray(run.groups)]
            for k, (run, lo) in enumerate(zip(runs, start, strict=False))]


@jit
def _rounds(feat: np.ndarray, d: int, weights: np.ndarray, area: np.ndarray,
            edges: np.ndarray, run_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The merge rounds on the joint region graph (``feat`` is updated in place): membership
    bool [M, n] of every merged region over the starting regions, and its run [M]."""
    n = len(feat)
    a, b = edges[:, 0].copy(), edges[:, 1].copy()
    label = np.arange(n)  # current region of every starting region
    rows = np.zeros((max(n - 1, 0), n), np.bool_)
    which = np.empty(max(n - 1, 0), np.int64)
    done = 0
    best = np.empty(n, np.int64)
    to = np.arange(n)
    merged = np.empty(max(n - 1, 0), np.int64)
    while len(a):
        start = done
        s = _similarity(feat, d, weights, area, a, b)
        # Every region's most similar edge; ties go to the first edge, i.e. the lower (a, b).
        best[:] = -1
        for e in range(len(s)):
            for v in (a[e], b[e]):
                if best[v] < 0 or s[e] > s[best[v]]:
                    best[v] = e
        mutual = np.empty(len(s), np.int64)
        k = 0
        for e in range(len(s)):
            if best[a[e]] == e and best[b[e]] == e:
                mutual[k] = e
                k += 1
        for i in range(1, k):  # most similar first, ties in edge order (stable insertion)
            e = mutual[i]
            j = i - 1
            while j >= 0 and s[mutual[j]] < s[e]:
                mutual[j + 1] = mutual[j]
                j -= 1
            mutual[j + 1] = e
        for e in mutual[:k]:  # the mutually best pairs are disjoint
            r, c = a[e], b[e]  # r < c: c joins r
            sr, sc = feat[r, d], feat[c, d]
            for i in range(d):
                feat[r, i] = (feat[r, i] * sr + feat[c, i] * sc) / (sr + sc)
            feat[r, d] = sr + sc
            for i in range(d + 1, d + 3):
                feat[r, i] = min(feat[r, i], feat[c, i])
            for i in range(d + 3, d + 5):
                feat[r, i] = max(feat[r, i], feat[c, i])
            to[c] = r
            merged[done] = r
            which[done] = run_of[r]
            done += 1
        for i in range(n):
            label[i] = to[label[i]]
        for m in range(start, done):  # this round's merged regions, over starting regions
            r = merged[m]
            for i in range(n):
                rows[m, i] = label[i] == r
        a, b = _sorted_unique_pairs(to[a], to[b], n)
    return rows[:done], which[:done]


@jit
def _sorted_unique_pairs(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs (min, max) of (x, y) over 0..n-1, self-pairs dropped, in
    lexicographic order: two stable counting sorts (by max, then by min)."""
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    order = np.arange(len(lo))
    for key in (hi, lo):
        start = np.zeros(n + 1, np.int64)
        for e in order:
            start[key[e] + 1] += 1
        for v in range(n):
            start[v + 1] += start[v]
        out = np.empty_like(order)
        for e in order:
            out[start[key[e]]] = e
            start[key[e]] += 1
        order = out
    a, b = np.empty(len(lo), np.int64), np.empty(len(lo), np.int64)
    k = 0
    for e in order:
        if lo[e] != hi[e] and (k == 0 or lo[e] != a[k - 1] or hi[e] != b[k - 1]):
            a[k], b[k] = lo[e], hi[e]
            k += 1
    return a[:k], b[:k]


@jit
def _similarity(feat: np.ndarray, d: int, weights: np.ndarray, area: np.ndarray,
                a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Selective-search similarity of the region pairs (a, b): colour histogram intersection,
    size (small first) and fill (compact box first) terms, weighted 0/1 per run."""
    s = np.empty(len(a))
    for e in range(len(a)):
        i, j = a[e], b[e]
        colour = 0.0
        for k in range(d):
            colour += min(feat[i, k], feat[j, k])
        small = 1.0 - (feat[i, d] + feat[j, d]) / area[i]
        ext_y = max(feat[i, d + 3], feat[j, d + 3]) - min(feat[i, d + 1], feat[j, d + 1])
        ext_x = max(feat[i, d + 4], feat[j, d + 4]) - min(feat[i, d + 2], feat[j, d + 2])
        fill = 1.0 - (ext_y * ext_x - feat[i, d] - feat[j, d]) / area[i]
        s[e] = colour * weights[i, 0] + small * weights[i, 1] + fill * weights[i, 2]
    return s
