"""Built-in proposals made in worker processes ahead of the networks (``--proposal-workers``).

The grouping loop of the generator holds the GIL, so threads cannot overlap it with the
networks; processes can. Frames go to the pool as they are decoded (at most ``ahead`` in
flight) and come back in order with their proposals, made by the same function the inline
path calls (``icnseg.postprocess.proposals_for``), so the instances are identical. Workers
send back only the superpixel factorisation (labels + membership); the masks are rebuilt
here, which is far cheaper than pickling them.
"""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from icnseg.cli.sources import Frame
from icnseg.errors import ConfigError, IcnsegError
from icnseg.proposals.types import Proposals


def _init_worker() -> None:
    """One OpenCV thread per worker: the parallelism is the processes'."""
    import cv2

    cv2.setNumThreads(1)


def _make(image: np.ndarray, max_side: int | None):
    """Worker body: (labels, membership) of the built-in proposals, or the IcnsegError."""
    from icnseg.postprocess import proposals_for

    try:
        props = proposals_for(image, None, max_side)
    except IcnsegError as exc:
        return exc
    return props.superpixels, props.membership


class ProposalPool:
    """``workers`` processes making built-in proposals at the matching size ``max_side``."""

    def __init__(self, workers: int, max_side: int | None) -> None:
        """Start the processes (spawned: no copy of the parent's ONNX/torch threads)."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"--proposal-workers must be an integer >= 1, got {workers!r}")
        self.workers, self.max_side = workers, max_side
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
            "spawn"), initializer=_init_worker)

    def submit(self, image: np.ndarray) -> Future:
        """Queue one image; the future's result is what ``_make`` returns."""
        return self._pool.submit(_make, image, self.max_side)

    def frames(self, frames: Iterable[Frame], ahead: int | None = None) -> Iterator[Frame]:
        """``frames`` in order, each good one with ``frame.proposals`` set (or its error);
        up to ``ahead`` (default 2 per worker) frames are being made at once."""
        ahead = ahead or 2 * self.workers
        pending: collections.deque[tuple[Frame, Future | None]] = collections.deque()
        for frame in frames:
            pending.append((frame, self.submit(frame.image) if frame.error is None else None))
            if len(pending) >= ahead:
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())

    def close(self) -> None:
        """Stop the workers (queued work is cancelled)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProposalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finish(frame: Frame, future: Future | None) -> Frame:
    """The frame with its proposals from ``future`` (an IcnsegError becomes frame.error)."""
    if future is None:
        return frame
    result = future.result()
    if isinstance(result, IcnsegError):
        frame.error = result
    else:
        frame.proposals = Proposals.from_membership(*result, check=False)
    return frame
