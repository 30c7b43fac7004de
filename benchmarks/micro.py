"""Micro-benchmarks of the two stages the original code spends most time in (same process).

* matcher: Eq. 5 scores + arg-max for K instances against N proposals, the baseline's
  one-pair-at-a-time loop vs ``icnseg.matching`` (dense masks, and superpixel-factored
  proposals as MCG and the built-in generator produce them);
* PRM backward: K single-peak backward passes vs one batched backward.
Each pair of variants is checked equal before its times are kept.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from icnseg.benchmarks.agree import BenchmarkError
from icnseg.benchmarks.timing import best_of
from icnseg.matching import background_template, best_proposals, contour, match_scores
from icnseg.proposals.types import Proposals


def synthetic_matching(shape: tuple[int, int], n: int, k: int, seed: int = 0,
                       superpixels: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V bool [K,H,W] blobs, superpixel map int32 [H,W], membership bool [N,S]) of random
    proposals that are unions of 1..12 grid superpixels around a random centre."""
    rng = np.random.default_rng(seed)
    h, w = shape
    side = max(1, int(round(np.sqrt(superpixels))))
    ys = np.minimum(np.arange(h) * side // h, side - 1)
    xs = np.minimum(np.arange(w) * side // w, side - 1)
    sp = (ys[:, None] * side + xs[None, :]).astype(np.int32)
    member = np.zeros((n, side * side), bool)
    for i in range(n):
        cy, cx = rng.integers(0, side, 2)
        ry, rx = rng.integers(0, 3, 2)
        cells = [(y, x) for y in range(cy - ry, cy + ry + 1) for x in range(cx - rx, cx + rx + 1)
                 if 0 <= y < side and 0 <= x < side]
        for y, x in cells:
            member[i, y * side + x] = True
    yy, xx = np.mgrid[:h, :w]
    v = np.zeros((k, h, w), bool)
    for i in range(k):
        cy, cx = rng.uniform(0.2, 0.8, 2) * (h, w)
        ry, rx = rng.uniform(0.08, 0.25, 2) * (h, w)
        v[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return v, sp, member


def _seconds(fn: Any, arg: Any) -> float:
    """Wall seconds of ``fn(arg)``."""
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def matcher_micro(cfg: Any, shape: tuple[int, int], n: int = 1000, k: int = 8,
                  repeat: int = 3) -> dict[str, Any]:
    """Seconds of the baseline loop vs the vectorised matcher (dense, factored) at N x K."""
    from icnseg.benchmarks.baseline import loop_argmax, loop_scores

    m = cfg.match
    v, sp, member = synthetic_matching(shape, n, k)
    edge = contour(v, m.contour_width)
    background = background_template(v, m)
    factored = Proposals.from_membership(sp, member)
    dense = Proposals(factored.masks.copy())

    def ours(props: Proposals) -> tuple[np.ndarray, np.ndarray]:
        return best_proposals(match_scores(v, props, m, background=background, edge=edge))

    def loop() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        ref = loop_scores(v, edge, background, dense.masks, m.alpha, m.beta, m.gamma)
        return ref, loop_argmax(ref)

    ref, ref_best = loop()
    loop_s = best_of(loop, max(1, repeat - 1))
    for label, props in (("dense", dense), ("factored", factored)):
        index, quality = ours(props)
        picked = ref[np.arange(k), index]
        # equal scores may tie differently after float rounding: compare the picked values
        if not np.allclose(quality, ref_best[1], atol=1e-9) or not np.allclose(
                picked, ref_best[1], atol=1e-9):
            raise BenchmarkError(f"matcher ({label}) disagrees with the per-pair loop")
    fresh_dense = [Proposals(dense.masks) for _ in range(repeat)]
    fresh_factored = [Proposals.from_membership(sp, member, check=False) for _ in range(repeat)]
    dense_s = min(_seconds(ours, p) for p in fresh_dense)
    factored_s = min(_seconds(ours, p) for p in fresh_factored)
    return {"shape": list(shape), "n": n, "k": k, "loop_s": loop_s, "dense_s": dense_s,
            "factored_s": factored_s, "speedup_dense": loop_s / dense_s,
            "speedup_factored": loop_s / factored_s}


def backward_micro(model: Any, rule: str, k: int = 8, repeat: int = 3) -> dict[str, Any]:
    """Seconds of K single-peak backward passes vs one batched backward of K peaks."""
    import torch

    from icnseg.benchmarks.baseline import loop_maps
    from icnseg.models.prm_backprop import peak_response_maps
    from icnseg.preprocess import prepare_input

    h, w = model.input_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    _, x = prepare_input(image, (h, w), model.mean, model.std)
    x = torch.from_numpy(x)
    with torch.no_grad():
        crm = model.classifier(x)[0]
    flat = np.argsort(-crm.numpy().ravel(), kind="stable")[:k]
    c, y, xx = np.unravel_index(flat, crm.shape)
    peaks = np.stack([c, y, xx, np.zeros(k)], 1).astype(np.float64)
    model.classifier.eval()
    loop = loop_maps(model.classifier, x, peaks, rule)
    batched = peak_response_maps(model.classifier, x, peaks, rule)
    err = float((loop - batched).abs().max())
    if err > 1e-3 * float(loop.abs().max() or 1.0):
        raise BenchmarkError(f"batched backward disagrees with the per-peak loop ({err:.3g})")
    loop_s = best_of(lambda: loop_maps(model.classifier, x, peaks, rule), repeat)
    batched_s = best_of(lambda: peak_response_maps(model.classifier, x, peaks, rule), repeat)
    return {"size": [h, w], "k": k, "rule": rule, "loop_s": loop_s, "batched_s": batched_s,
            "speedup": loop_s / batched_s, "max_abs_err": err}


def micro_benchmarks(model: Any, cfg: Any) -> dict[str, Any]:
    """Matcher at N=1000, K=8 (model input size and 448 x 448) and backward at K=8."""
    return {
        "matcher": [matcher_micro(cfg, tuple(model.input_size)), matcher_micro(cfg, (448, 448))],
        "backward": backward_micro(model, cfg.rule, k=8),
    }
