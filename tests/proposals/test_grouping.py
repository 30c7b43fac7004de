"""Parallel hierarchical grouping (mutually best pairs per round), checked against plain loops."""

import itertools

import numpy as np
import pytest

from icnseg.proposals.grouping import GroupingRun, group_runs


def random_run(rng: np.random.Generator, g: int, terms: str, extra_edges: int = 6
               ) -> GroupingRun:
    """A connected random region graph (a random tree plus a few extra edges) with random
    histograms, sizes and boxes; every region is its own superpixel group but the last two."""
    pairs = {tuple(sorted((i, int(rng.integers(0, i))))) for i in range(1, g)}
    for _ in range(extra_edges):
        a, b = rng.choice(g, 2, replace=False)
        pairs.add((int(min(a, b)), int(max(a, b))))
    size = rng.integers(5, 60, g).astype(float)
    y0, x0 = rng.integers(0, 50, g), rng.integers(0, 50, g)
    box = np.stack([y0, x0, y0 + rng.integers(2, 20, g), x0 + rng.integers(2, 20, g)], 1)
    hist = rng.random((g, 12)) * size[:, None]
    groups = np.concatenate([np.arange(g), [g - 1, g - 2]])  # S = g + 2 superpixels
    return GroupingRun(groups, hist, size, box.astype(float), np.array(sorted(pairs)), terms,
                       80 * 80)


def reference(run: GroupingRun) -> list[set[int]]:
    """The rounds in plain Python: similarities of the round's start, every pair that is
    each other's most similar neighbour (ties: lower (a, b)) merged, most similar first."""
    g = len(run.size)
    hist = {i: [float(v) / max(3 * run.size[i], 1) for v in run.hist[i]] for i in range(g)}
    size = {i: float(run.size[i]) for i in range(g)}
    box = {i: [float(v) for v in run.box[i]] for i in range(g)}
    members = {i: {i} for i in range(g)}
    edges = {(int(a), int(b)) for a, b in run.pairs}
    out = []

    def sim(i: int, j: int) -> float:
        s = 0.0
        if "c" in run.terms:
            s += sum(min(p, q) for p, q in zip(hist[i], hist[j], strict=True))
        if "s" in run.terms:
            s += 1.0 - (size[i] + size[j]) / run.area
        if "f" in run.terms:
            bh = max(box[i][2], box[j][2]) - min(box[i][0], box[j][0])
            bw = max(box[i][3], box[j][3]) - min(box[i][1], box[j][1])
            s += 1.0 - (bh * bw - size[i] - size[j]) / run.area
        return s

    while edges:
        order = sorted(edges, key=lambda e: (-sim(*e), e))
        best: dict[int, tuple[int, int]] = {}
        for e in order:
            best.setdefault(e[0], e)
            best.setdefault(e[1], e)
        for r, c in [e for e in order if best[e[0]] == e and best[e[1]] == e]:
            total = size[r] + size[c]
            hist[r] = [(p * size[r] + q * size[c]) / total
                       for p, q in zip(hist[r], hist[c], strict=True)]
            size[r] = total
            box[r] = [min(box[r][0], box[c][0]), min(box[r][1], box[c][1]),
                      max(box[r][2], box[c][2]), max(box[r][3], box[c][3])]
            members[r] |= members.pop(c)
            edges = {(min(r if a == c else a, r if b == c else b),
                      max(r if a == c else a, r if b == c else b)) for a, b in edges}
            edges = {e for e in edges if e[0] != e[1]}
            out.append(set(members[r]))
    return out


def superpixels_of(regions: set[int], groups: np.ndarray) -> np.ndarray:
    """Membership row over superpixels of a set of starting regions."""
    return np.isin(groups, sorted(regions))


@pytest.mark.parametrize("seed", range(6))
def test_rounds_match_a_plain_python_reference(seed):
    rng = np.random.default_rng(seed)
    runs = [random_run(rng, g, terms) for g, terms in ((9, "csf"), (14, "cs"), (6, "sf"))]
    got = group_runs(runs)
    for run, rows in zip(runs, got, strict=True):
        want = np.array([superpixels_of(m, run.groups) for m in reference(run)])
        assert rows.shape == (len(run.size) - 1, len(run.groups))  # connected: G-1 merges
        np.testing.assert_array_equal(rows, want)


def test_runs_do_not_interact_and_form_a_hierarchy():
    rng = np.random.default_rng(11)
    runs = [random_run(rng, 12, "csf"), random_run(rng, 7, "cs")]
    together = group_runs(runs)
    for run, rows in zip(runs, together, strict=True):
        np.testing.assert_array_equal(rows, group_runs([run])[0])
        assert rows[-1].all()  # the last merge is the whole image
        # every merged region is the union of two disjoint earlier regions (or leaves)
        leaves = [superpixels_of({i}, run.groups) for i in range(len(run.size))]
        seen = leaves + []
        for row in rows:
            parts = [(p, q) for p, q in itertools.combinations(seen, 2)
                     if not (p & q).any() and np.array_equal(p | q, row)]
            assert parts, "a merged region is not the union of two earlier regions"
            seen.append(row)


def test_most_similar_pair_merges_first_and_isolated_regions_stay():
    # regions 0-1-2 in a chain, 3 isolated; 1 and 2 have the same colour: they merge first
    hist = np.array([[9.0, 0, 0], [0, 9, 0], [0, 9, 0], [3, 3, 3]])
    run = GroupingRun(np.arange(4), hist, np.full(4, 3.0), np.tile([0.0, 0, 2, 2], (4, 1)),
                      np.array([[0, 1], [1, 2]]), "c", 100)
    (rows,) = group_runs([run])
    np.testing.assert_array_equal(rows, [[False, True, True, False], [True, True, True, False]])
    assert group_runs([]) == []
