"""Stage timers and latency statistics for the benchmarks (pure Python, no torch)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 99)
MIN_SAMPLES = 30  # below this a p99 is one of the slowest few samples: reported, with a warning


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


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Latency statistics in milliseconds: p50/p90/p99 (linear interpolation), mean, sample
    standard deviation, min, max, n and the raw samples (in timing order)."""
    if not len(seconds):
        return {"n": 0, "samples_ms": []}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    out: dict[str, Any] = {f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES}
    out.update(mean=float(ms.mean()), std=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
               min=float(ms.min()), max=float(ms.max()), n=len(ms),
               samples_ms=[round(float(v), 4) for v in ms])
    return out


def timing_warnings(n_samples: int, loadavg: Sequence[float] | None, cores: int | None
                    ) -> list[str]:
    """What makes a timing less trustworthy: too few samples, a machine busy with other work."""
    out = []
    if n_samples < MIN_SAMPLES:
        out.append(f"only {n_samples} timed samples per backend: p90/p99 are among the slowest "
                   f"few samples (use --iters {MIN_SAMPLES} or more for stable percentiles)")
    if loadavg and cores and loadavg[0] > cores:
        out.append(f"the machine was busy: load average {loadavg[0]:.1f} over {cores} cores "
                   "while measuring; times include other work")
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
