"""The one model-level protocol: a Segmenter runs Algorithm 1 on one image in four steps.

    prepare(image, proposals)  host only, thread-safe: check, resize + normalise, proposals
    infer(prepared, cfg)       the networks: peaks, naive PRMs, ICN x T  -> Stages
    select(prepared, stages)   matching (Eq. 5), top proposal per instance, mask NMS
    close()                    release sessions / device memory

The eager PyTorch model (``icnseg.eager``), exported graphs on ONNX Runtime or TensorRT
(``icnseg.runtime.exported_model``) and the original-PRM baseline (``icnseg.benchmarks``)
implement it; ``icnseg.load`` is the one factory and ``segment`` the one driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from icnseg.errors import ConfigError
from icnseg.instance import Instance
from icnseg.proposals.types import Proposals
from icnseg.settings import SegmentConfig

# A stage clock: ``with clock("matcher"): ...`` times one stage (benchmarks pass one in).
Clock = Callable[[str], AbstractContextManager]

# Stage names in pipeline order, shared by every Segmenter, the bench and its report. A graph
# that computes forward and backward together reports one "prm" stage.
STAGES = ("preprocess", "prm_forward", "prm_backward", "prm", "icn", "proposals", "binarise",
          "matcher", "nms", "postprocess")


def no_clock(stage: str) -> AbstractContextManager:
    """The default clock: times nothing."""
    return contextlib.nullcontext()


@dataclass
class Stages:
    """Intermediate results of one image at the model's input size (for ablations and tests)."""

    image: np.ndarray  # uint8 [H, W, 3] resized to the model input
    class_conf: np.ndarray  # [C] sigmoid class scores
    peaks: np.ndarray  # [K, 4] (class, y, x, value) in class-response-map pixels
    prm: np.ndarray  # [K, H, W] naive PRMs
    enhanced: np.ndarray | None = None  # [K, H, W] ICN output in [0, 1] after T passes
    crm: np.ndarray | None = None  # [C, h, w] class response maps
    device_maps: Any = None  # final maps left on a GPU for the device matcher (else None)


@dataclass
class Prepared:
    """One image after the host-side work of ``prepare`` (safe to do in another thread)."""

    image: np.ndarray  # RGB uint8 at its own size (instance masks come back at this size)
    model_input: np.ndarray  # uint8 [h, w, 3] resized to the model input
    x: np.ndarray  # float32 [1, 3, h, w] normalised network input
    proposals: Proposals | None  # at the matching size (upsample.match_shape); None: by select


@runtime_checkable
class Segmenter(Protocol):
    """A loaded model that segments images (Algorithm 1), on one backend and device."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) the networks run at
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backend: str  # torch | onnxruntime | tensorrt | baseline
    device: str  # cpu | cuda | tensorrt (ONNX Runtime's TensorRT provider)
    precision: str  # fp32 | fp16 | int8
    source: str  # the checkpoint file or export directory it was loaded from

    def segment_config(self, **overrides: Any) -> SegmentConfig:
        """The model's recorded settings + overrides; ConfigError for what it cannot do."""
        ...

    def prepare(self, image: np.ndarray, proposals: Proposals | None = None,
                clock: Clock = no_clock, build_proposals: bool = True,
                config: SegmentConfig | None = None) -> Prepared:
        """Check, resize and normalise one RGB uint8 image; make (unless ``build_proposals``
        is False) or resize its proposals at ``config``'s matching size."""
        ...

    def infer(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock = no_clock,
              keep_maps: bool = False) -> Stages:
        """Peaks, naive PRMs and ICN maps (``keep_maps``: copy device-resident maps to host)."""
        ...

    def select(self, prepared: Prepared, stages: Stages, cfg: SegmentConfig,
               clock: Clock = no_clock) -> list[Instance]:
        """Instances at the image's own size: matching, top proposal, mask NMS."""
        ...

    def close(self) -> None:
        """Release what the model holds (sessions, device memory)."""
        ...


CHANNELS = ("rgb", "bgr")


def as_rgb(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """``image`` with its colour channels in RGB order (``channels="bgr"``: cv2.imread's)."""
    if channels not in CHANNELS:
        raise ConfigError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    a = np.asarray(image)
    return a[..., ::-1] if channels == "bgr" and a.ndim == 3 else a


def segment(model: Segmenter, image: np.ndarray, proposals: Proposals | None = None,
            config: SegmentConfig | None = None, channels: str = "rgb") -> list[Instance]:
    """Segment one uint8 image (RGB, or BGR with ``channels="bgr"``) with any Segmenter;
    masks at the image's own size."""
    cfg = config or model.segment_config()
    prepared = model.prepare(as_rgb(image, channels), proposals, config=cfg)
    return model.select(prepared, model.infer(prepared, cfg), cfg)


def run_stages(model: Segmenter, image_rgb_uint8: np.ndarray, cfg: SegmentConfig | None = None,
               clock: Clock = no_clock) -> Stages:
    """Peaks, naive PRMs and ICN maps of one image (no proposals made): for ablations."""
    cfg = cfg or model.segment_config()
    prepared = model.prepare(image_rgb_uint8, clock=clock, build_proposals=False)
    return model.infer(prepared, cfg, clock, keep_maps=True)


def segment_batch(model: Segmenter, images: Iterable[np.ndarray],
                  config: SegmentConfig | None = None, channels: str = "rgb"
                  ) -> list[list[Instance]]:
    """``segment`` for each image (built-in proposals), in order."""
    return list(segment_stream(model, images, config, channels))


def segment_stream(model: Segmenter, images: Iterable[np.ndarray],
                   config: SegmentConfig | None = None, channels: str = "rgb"
                   ) -> Iterator[list[Instance]]:
    """Lazily segment an iterable of images (e.g. video frames), yielding one list each."""
    cfg = config or model.segment_config()
    for image in images:
        yield segment(model, image, config=cfg, channels=channels)
