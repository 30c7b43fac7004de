"""Frame: one item of an input source (an image, a video frame), or the error that replaced it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from icnseg.errors import IcnsegError


@dataclass
class Frame:
    """One item of a source: a decoded RGB frame, or the error that replaced it."""

    source: Any  # the ImageSource / CaptureSource it came from
    index: int  # position in its source (video frame number, counting skipped ones)
    name: str  # "image" field of the JSON: "a.jpg", "clip.mp4#000012", "camera0#000003"
    stem: str  # output path stem under --out: "a", "clip/000012"
    key: str  # proposal lookup stem: image file stem, "<video stem>/<frame>"
    origin: str  # the input named in error lines: image path, video path, "camera 0"
    image: np.ndarray | None = None  # RGB uint8 [H, W, 3]
    error: IcnsegError | None = None
    data: Any = None  # what the prefetch preprocess made of the frame
    proposals: Any = None  # built-in Proposals made ahead by a worker process (or None)
