"""A benchmarked pipeline: one Segmenter (torch, exported, baseline) timed stage by stage.

Stage names are ``icnseg.segmenter.STAGES``. An exported ``prm.onnx`` computes forward, peaks
and backward in one graph; on ONNX Runtime its forward share is measured with a forward-only
copy of the graph on the same input and the backward is the rest (``derived`` stages); where
no such copy can be made (a TensorRT engine is built per graph; no ``onnx`` package in a
runtime-only install), the whole graph is one ``prm`` stage.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.benchmarks.timing import StageTimer
from icnseg.instance import Instance
from icnseg.loader import ONNXRUNTIME
from icnseg.proposals.types import Proposals
from icnseg.segmenter import Stages
from icnseg.settings import SegmentConfig

FORWARD_OUTPUTS = ("crm", "class_scores", "peaks", "count")


def runner_name(model: Any) -> str:
    """The bench's name of a Segmenter: its backend, plus the device when not the CPU."""
    return model.backend if model.device == "cpu" else f"{model.backend}-{model.device}"


class Runner:
    """One Segmenter with fixed settings, as the bench times it."""

    def __init__(self, model: Any, cfg: SegmentConfig) -> None:
        """Wrap a loaded Segmenter; on ONNX Runtime a forward-only prm graph is loaded too."""
        self.model, self.cfg, self.classes = model, cfg, model.classes
        self.name = runner_name(model)
        self.forward, self.derived = None, ()
        path = getattr(model, "path", None)
        if model.backend == ONNXRUNTIME and importlib.util.find_spec("onnx"):
            import onnx.utils

            from icnseg.runtime.backend import load_backend

            self._tmp = tempfile.TemporaryDirectory(prefix="icnseg-bench-")
            forward = Path(self._tmp.name) / "prm_forward.onnx"
            onnx.utils.extract_model(str(path / "prm.onnx"), str(forward), ["image"],
                                     list(FORWARD_OUTPUTS))
            self.forward = load_backend(model.backend, forward, model.device,
                                        threads=getattr(model, "threads", None))
            self.derived = ("prm_forward", "prm_backward")

    def segment(self, image: np.ndarray, proposals: Proposals,
                timer: StageTimer | None = None) -> tuple[list[Instance], Stages]:
        """Instances and stages of one image; with a timer, the prm graph's time is split
        (and device-resident maps stay on the device, as in ``icnseg run``)."""
        split = timer is not None
        timer = timer or StageTimer()
        prepared = self.model.prepare(image, proposals, clock=timer)
        stages = self.model.infer(prepared, self.cfg, timer, keep_maps=not split)
        instances = self.model.select(prepared, stages, self.cfg, timer)
        prm = timer.seconds.get("prm")
        if split and prm is not None and self.forward is not None:
            del timer.seconds["prm"]
            t0 = time.perf_counter()
            self.forward.run({"image": prepared.x})
            fwd = min(time.perf_counter() - t0, prm)
            timer.add("prm_forward", fwd)
            timer.add("prm_backward", prm - fwd)
        return instances, stages

    def close(self) -> None:
        """Release the sessions (and the forward-only copy)."""
        if self.forward is not None:
            self.forward.close()
            self._tmp.cleanup()
        self.model.close()
