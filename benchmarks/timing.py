"""Stage timers and latency statistics for the benchmarks (pure Python, no torch)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


class StageTimer:
    """A stage clock (``icnseg.postprocess.Clock``) that adds up wall seconds per stage.

    ``sync`` is called before and after every stage: on a GPU it waits for queued device work
    (e.g. ``torch.cuda.synchronize``) so each stage is charged for its own kernels.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        """Start with no recorded stages."""
        self.sync = sync
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time one stage (repeated stages add up)."""
        if self.sync:
            self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                self.sync()
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def add(self, stage: str, seconds: float) -> None:
        """Charge ``seconds`` measured elsewhere to ``stage``."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def total(self) -> float:
        """Sum of all stage times."""
        return sum(self.seconds.values())


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Latency statistics in milliseconds: p50/p90/p99 (linear interpolation), mean, min, max."""
    if not len(seconds):
        return {"n": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    out = {f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES}
    out.update(mean=float(ms.mean()), min=float(ms.min()), max=float(ms.max()), n=len(ms))
    return out


def best_of(fn: Callable[[], object], repeat: int, number: int = 1) -> float:
    """Smallest mean seconds of ``number`` calls over ``repeat`` rounds (for micro-benchmarks)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best
