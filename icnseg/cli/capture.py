"""Video files, cameras, stream URLs and GStreamer pipelines read with cv2.VideoCapture.

Streams: ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://`` URLs through OpenCV's FFmpeg,
and GStreamer pipelines (a string with `` ! `` ending in ``appsink``) through OpenCV's
GStreamer backend, which pip's opencv-python-headless lacks (a board's system OpenCV, e.g.
JetPack's, has it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from icnseg.cli.frame import Frame
from icnseg.errors import ConfigError, IcnsegError, InputError

DEFAULT_FPS = 25.0  # used when a video or camera reports no (or an absurd) frame rate
MIN_OUTPUT_FPS = 1.0  # slowest annotated video written (a large --every would go below)
_URL = re.compile(r"(rtsps?|rtmp|https?)://\S+", re.IGNORECASE)


def stream_kind(item: str) -> str | None:
    """"rtsp" (RTSP/RTMP), "http", "gstreamer" or None for a file path / camera index."""
    if _URL.fullmatch(item.strip()):
        scheme = item.split(":", 1)[0].lower()
        return "http" if scheme.startswith("http") else "rtsp"
    if " ! " in item and "appsink" in item:
        return "gstreamer"
    return None


def capture_stem(item: Path | int | str) -> str:
    """Output stem of a capture input: the video's stem, camera<N>, or a stream's name."""
    if isinstance(item, int):
        return f"camera{item}"
    if isinstance(item, Path):
        return item.stem
    if stream_kind(item) == "gstreamer":
        return "pipeline"
    tail = item.split("://", 1)[1].split("?", 1)[0].rstrip("/")
    name = tail.rsplit("/", 1)[-1] if "/" in tail else tail
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem or name) or "stream"


def open_stream(target: str, kind: str):
    """An opened cv2.VideoCapture of a stream URL or pipeline; InputError naming it if not."""
    import cv2

    if kind == "gstreamer" and not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        raise InputError(f"{target}: this OpenCV build has no GStreamer support (pip's "
                         "opencv-python-headless has none; use an OpenCV built with "
                         "GStreamer, e.g. JetPack's, or give an rtsp:// or http:// URL)")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we report failures
    try:
        backend = cv2.CAP_GSTREAMER if kind == "gstreamer" else cv2.CAP_FFMPEG
        cap = cv2.VideoCapture(target, backend)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        raise InputError(f"{target}: cannot open the stream (unreachable, refused, not a "
                         "video, or a protocol this OpenCV's FFmpeg lacks)")
    return cap


class CaptureSource:
    """A video file (``target`` a Path), camera (an int), stream URL or GStreamer pipeline
    (a str) read with cv2.VideoCapture."""

    def __init__(self, target: Path | int | str, stem: str, max_frames: int | None = None,
                 every: int = 1) -> None:
        """Read every ``every``-th frame, at most ``max_frames`` of them (None: to the end)."""
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {max_frames}")
        if every < 1:
            raise ConfigError(f"--every must be >= 1, got {every}")
        self.target, self.stem, self.max_frames, self.every = target, stem, max_frames, every
        self.stream = stream_kind(target) if isinstance(target, str) else None
        # a camera, an RTSP/RTMP stream or a pipeline never ends; an http(s) URL may be a file
        self.live = isinstance(target, int) or self.stream in ("rtsp", "gstreamer")
        self.kind = ("camera" if isinstance(target, int) else
                     "stream" if self.stream else "video")
        self.label = f"camera {target}" if isinstance(target, int) else str(target)
        self.fps = DEFAULT_FPS  # of the input; set when opened
        self.declared = 0  # frame count in the file's header (0: unknown); set when opened

    @property
    def output_fps(self) -> float:
        """Frame rate of the annotated video: the input's divided by the stride, at least
        MIN_OUTPUT_FPS (OpenCV cannot write mp4v below ~0.001 fps; players stall below 1)."""
        return max(self.fps / self.every, MIN_OUTPUT_FPS)

    def _open(self):
        import cv2

        from icnseg.output.video import quiet_ffmpeg

        quiet_ffmpeg()
        if self.stream is not None:
            cap = open_stream(str(self.target), self.stream)
        elif isinstance(self.target, int):
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                cap = cv2.VideoCapture(int(self.target))
            finally:
                cv2.utils.logging.setLogLevel(level)
            if not cap.isOpened():
                raise InputError(f"{self.label}: cannot open (no such device, busy, "
                                 "or no camera support in this OpenCV build)")
        else:
            path = Path(self.target)
            if path.is_file() and path.stat().st_size == 0:
                raise InputError(f"{path}: empty file, not a video")
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                raise InputError(f"{path}: cannot open as a video (not a video, unsupported "
                                 "codec, or a corrupt or truncated file)")
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.declared = int(count) if math.isfinite(count) and count > 0 else 0
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
        return cap

    def _frame(self, index: int, image=None, error: IcnsegError | None = None) -> Frame:
        named = isinstance(self.target, Path)
        base = Path(self.target).stem if named else self.stem
        label = Path(self.target).name if named else self.stem
        return Frame(self, index, f"{label}#{index:06d}", f"{self.stem}/{index:06d}",
                     f"{base}/{index:06d}", self.label, image, error)

    def frames(self) -> Iterator[Frame]:
        """Decode frames in order; a failed open or an early end becomes a final error item."""
        try:
            cap = self._open()
        except InputError as exc:
            yield self._frame(0, error=exc)
            return
        try:
            yield from self._read(cap)
        finally:
            cap.release()

    def _read(self, cap) -> Iterator[Frame]:
        import cv2

        n = taken = 0  # frames consumed from the stream / frames yielded
        while self.max_frames is None or taken < self.max_frames:
            try:
                if not cap.grab():
                    break
                if n % self.every == 0:
                    ok, bgr = cap.retrieve()
                    if not ok or bgr is None:
                        break
                    yield self._frame(n, image=_to_rgb(bgr, self.label, n))
                    taken += 1
            except (cv2.error, InputError) as exc:
                yield self._frame(n, error=InputError(
                    f"{self.label}: decoding failed at frame {n}: {str(exc).strip()}"))
                return
            n += 1
        else:
            return  # --frames reached
        if self.live and n == 0:
            yield self._frame(n, error=InputError(f"{self.label}: opened but delivered no frame"))
        elif not self.live and self.declared and n < self.declared:
            yield self._frame(n, error=InputError(
                f"{self.label}: video ends early: read {n} of the {self.declared} frames its "
                "header declares (truncated or corrupt file)"))
        elif not self.live and n == 0:
            yield self._frame(n, error=InputError(f"{self.label}: no frame could be decoded"))


def _to_rgb(frame: np.ndarray, label: str, index: int) -> np.ndarray:
    """A decoded OpenCV frame (BGR, BGRA or gray; uint8 or uint16) as RGB uint8."""
    import cv2

    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0:
        raise InputError(f"{label}: frame {index} is {frame.dtype} {frame.shape}, not 8-bit")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(frame, code)
