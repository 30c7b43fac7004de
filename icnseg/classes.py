"""Class lists: the synthetic shapes and PASCAL VOC 2012."""

from __future__ import annotations

SYNTH_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
