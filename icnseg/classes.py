"""Class lists: the synthetic shapes and PASCAL VOC 2012."""

from __future__ import annotations

SYNTH_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# The class-agnostic non-target shapes of `icnseg data synth --objects others` (one class).
OTHER_SHAPES: tuple[str, ...] = (
    "ellipse", "hexagon", "pentagon", "crescent", "arrow", "heart", "lshape", "ring")
OTHERS_CLASSES: tuple[str, ...] = ("object",)
SYNTH_STYLES: tuple[str, ...] = ("train", "salient", "unseen")  # looks, see data/synth_styles
SYNTH_OBJECTS: tuple[str, ...] = ("targets", "others")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
