"""One adapter per benchmarked pipeline: ``segment(image, proposals, clock)`` on the same inputs.

Stage names (shared by every runner, in pipeline order): preprocess, prm_forward,
prm_backward, icn, proposals, binarise (binarise + contour + background), matcher (Eq. 5
scores + arg-max), nms, postprocess (masks to image size). An exported ``prm.onnx`` computes
forward, peaks and backward in one graph; its forward share is measured with a forward-only
copy of the graph on the same input, and the backward is the rest (``derived`` stages);
where no forward-only copy can be made (a TensorRT engine is built per graph; no ``onnx``
package in a runtime-only install), the whole graph is one ``prm`` stage.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.benchmarks.timing import StageTimer
from icnseg.outputs import Instance
from icnseg.postprocess import Stages, prepare_input, segment_stages
from icnseg.proposals.types import Proposals
from icnseg.settings import SegmentConfig

STAGES = ("preprocess", "prm_forward", "prm_backward", "prm", "icn", "proposals", "binarise",
          "matcher", "nms", "postprocess")
FORWARD_OUTPUTS = ("crm", "class_scores", "peaks", "count")


class TorchRunner:
    """Eager PyTorch, batched backward (``icnseg.pipeline``): the reference."""

    derived: tuple[str, ...] = ()

    def __init__(self, model: Any, cfg: SegmentConfig, name: str = "torch") -> None:
        """Wrap a loaded ``icnseg.Model``."""
        self.name, self.model, self.cfg, self.classes = name, model, cfg, model.classes

    def segment(self, image: np.ndarray, proposals: Proposals,
                timer: StageTimer | None = None) -> tuple[list[Instance], Stages]:
        """Instances and intermediate stages of one image."""
        from icnseg.pipeline import run_stages

        timer = timer or StageTimer()
        stages = run_stages(self.model, image, self.cfg, timer)
        return segment_stages(stages, image.shape[:2], self.classes, self.cfg, proposals,
                              timer), stages

    def close(self) -> None:
        """Nothing to release."""


class BaselineRunner(TorchRunner):
    """The original PRM code's way (``icnseg.benchmarks.baseline``)."""

    def __init__(self, model: Any, cfg: SegmentConfig) -> None:
        """Wrap a loaded ``icnseg.Model``; ConfigError if ``cfg`` is not what it implements."""
        from icnseg.benchmarks.baseline import check_supported

        check_supported(cfg)
        super().__init__(model, cfg, name="baseline")

    def segment(self, image: np.ndarray, proposals: Proposals,
                timer: StageTimer | None = None) -> tuple[list[Instance], Stages]:
        """Instances and intermediate stages of one image."""
        from icnseg.benchmarks import baseline

        timer = timer or StageTimer()
        stages = baseline.run_stages(self.model, image, self.cfg, timer)
        return baseline.segment_stages(stages, image.shape[:2], self.classes, self.cfg,
                                       proposals, timer), stages


class ExportedRunner:
    """An export directory on a runtime backend (``icnseg.runtime.ExportedModel``)."""

    def __init__(self, model: Any, cfg: SegmentConfig) -> None:
        """Wrap a loaded ExportedModel; on ONNX Runtime a forward-only prm graph is loaded too."""
        self.model, self.cfg, self.classes = model, cfg, model.classes
        self.name = (model.backend_name if model.device == "cpu"
                     else f"{model.backend_name}-{model.device}")
        self.forward, self.derived = None, ()
        if model.backend_name == "onnxruntime" and importlib.util.find_spec("onnx"):
            import onnx.utils

            from icnseg.runtime.backend import load_backend

            self._tmp = tempfile.TemporaryDirectory(prefix="icnseg-bench-")
            forward = Path(self._tmp.name) / "prm_forward.onnx"
            onnx.utils.extract_model(str(model.path / "prm.onnx"), str(forward), ["image"],
                                     list(FORWARD_OUTPUTS))
            self.forward = load_backend(model.backend_name, forward, model.device)
            self.derived = ("prm_forward", "prm_backward")

    def segment(self, image: np.ndarray, proposals: Proposals,
                timer: StageTimer | None = None) -> tuple[list[Instance], Stages]:
        """Instances and stages of one image; with a timer, the prm graph's time is split."""
        split = timer is not None
        timer = timer or StageTimer()
        with timer("preprocess"):
            resized, x = prepare_input(image, self.model.input_size, self.model.mean,
                                       self.model.std)
        # on a GPU the matching runs on the device maps: keep them for the agreement check only
        instances, stages = self.model.segment_with_stages(
            resized, image.shape[:2], proposals, self.cfg, timer, keep_maps=not split)
        prm = timer.seconds.get("prm")
        if split and prm is not None and self.forward is not None:
            del timer.seconds["prm"]
            t0 = time.perf_counter()
            self.forward.run({"image": x})
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
