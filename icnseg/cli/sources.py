"""Frame sources of `icnseg run`: image files, video files and cameras, plus a prefetcher.

Every source yields :class:`Frame` items in order. Expected problems (an unreadable image,
a video that cannot be opened or ends before its header's frame count, a camera that cannot
be opened) are *items* with ``error`` set, so one bad input never stops the others; only
unexpected exceptions end the stream. :class:`Prefetcher` runs a source (and a per-frame
preprocess such as resizing) in a background thread a few frames ahead of the consumer, so
decoding frame i+1 overlaps the segmentation of frame i.
"""

from __future__ import annotations

import contextlib
import glob
import math
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from icnseg.data.images import IMAGE_SUFFIXES
from icnseg.errors import ConfigError, IcnsegError, InputError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv")
DEFAULT_FPS = 25.0  # used when a video or camera reports no (or an absurd) frame rate
MIN_OUTPUT_FPS = 1.0  # slowest annotated video written (a large --every would go below)
_CAMERA = re.compile(r"cam(?:era)?:(.*)", re.IGNORECASE)


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


def camera_index(item: str) -> int | None:
    """Camera index of an INPUT ("0", "cam:0", "camera:1"), or None if it is not a camera."""
    m = _CAMERA.fullmatch(item)
    if m is None:
        if item.isdigit() and item.isascii() and not Path(item).exists():
            return int(item)
        return None
    if not (m.group(1).isdigit() and m.group(1).isascii()):
        raise InputError(f"{item}: camera index must be a non-negative integer (e.g. cam:0)")
    return int(m.group(1))


def _media(paths: Iterable[str | Path]) -> list[Path]:
    exts = IMAGE_SUFFIXES + VIDEO_EXTENSIONS
    return sorted(Path(q) for q in paths if Path(q).suffix.lower() in exts)


def expand_inputs(inputs: Sequence[str]) -> list[Path | int]:
    """Files, folders (images and videos, sorted), globs and camera indices; nothing found errs."""
    out: list[Path | int] = []
    for item in inputs:
        cam = camera_index(item)
        p = Path(item)
        if cam is not None:
            out.append(cam)
        elif p.is_dir():
            found = _media(q for q in p.iterdir() if q.is_file())
            if not found:
                raise InputError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            found = _media(glob.glob(item, recursive=True))
            if not found:
                raise InputError(f"{item}: pattern matches no images or videos")
            out.extend(found)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def expand_images(inputs: Sequence[str]) -> list[Path]:
    """expand_inputs() for commands that take still images only (videos, cameras: errors)."""
    out = expand_inputs(inputs)
    for item in out:
        if isinstance(item, int) or is_video(item):
            what = f"camera {item}" if isinstance(item, int) else str(item)
            raise InputError(f"{what}: this command takes images, not videos or cameras")
    return out  # type: ignore[return-value]


def is_video(path: Path) -> bool:
    """True if ``path`` names a video file (by extension)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


class ImageSource:
    """Image files, one frame each; an unreadable file is an error item, the rest go on."""

    kind = "images"
    live = False

    def __init__(self, paths: Sequence[Path], stems: Sequence[str]) -> None:
        """``stems`` are the (unique) output stems of ``paths``."""
        self.paths, self.stems = list(paths), list(stems)

    def frames(self) -> Iterator[Frame]:
        """Read the images in order."""
        from icnseg.data.voc import read_image

        for i, (path, stem) in enumerate(zip(self.paths, self.stems, strict=True)):
            frame = Frame(self, i, path.name, stem, path.stem, str(path))
            try:
                frame.image = read_image(path)
            except IcnsegError as exc:
                frame.error = exc
            yield frame


class CaptureSource:
    """A video file (``target`` a Path) or camera (an int) read with cv2.VideoCapture."""

    def __init__(self, target: Path | int, stem: str, max_frames: int | None = None,
                 every: int = 1) -> None:
        """Read every ``every``-th frame, at most ``max_frames`` of them (None: to the end)."""
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {max_frames}")
        if every < 1:
            raise ConfigError(f"--every must be >= 1, got {every}")
        self.target, self.stem, self.max_frames, self.every = target, stem, max_frames, every
        self.live = isinstance(target, int)
        self.kind = "camera" if self.live else "video"
        self.label = f"camera {target}" if self.live else str(target)
        self.fps = DEFAULT_FPS  # of the input; set when opened
        self.declared = 0  # frame count in the file's header (0: unknown); set when opened

    @property
    def output_fps(self) -> float:
        """Frame rate of the annotated video: the input's divided by the stride, at least
        MIN_OUTPUT_FPS (OpenCV cannot write mp4v below ~0.001 fps; players stall below 1)."""
        return max(self.fps / self.every, MIN_OUTPUT_FPS)

    def _open(self):
        import cv2

        if self.live:
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
        base = self.stem if self.live else Path(self.target).stem
        label = self.stem if self.live else Path(self.target).name
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


def _unique(stem: str, seen: dict[str, int]) -> str:
    n = seen.get(stem, 0)
    seen[stem] = n + 1
    return stem if n == 0 else f"{stem}-{n}"


def make_sources(items: Sequence[Path | int], max_frames: int | None = None,
                 every: int = 1) -> list[ImageSource | CaptureSource]:
    """Group expand_inputs() items into sources (runs of images share one); stems unique."""
    seen: dict[str, int] = {}
    sources: list[ImageSource | CaptureSource] = []
    for item in items:
        if isinstance(item, int) or is_video(item):
            stem = f"camera{item}" if isinstance(item, int) else item.stem
            sources.append(CaptureSource(item, _unique(stem, seen), max_frames, every))
            continue
        if not sources or not isinstance(sources[-1], ImageSource):
            sources.append(ImageSource([], []))
        sources[-1].paths.append(item)
        sources[-1].stems.append(_unique(item.stem, seen))
    return sources


def iter_frames(sources: Iterable[ImageSource | CaptureSource]) -> Iterator[Frame]:
    """All frames of all sources, in order."""
    for source in sources:
        yield from source.frames()


S = TypeVar("S")
T = TypeVar("T")
_ITEM, _END, _ERROR = "item", "end", "error"


def _produce(items: Iterable, fn: Callable | None, q: queue.Queue, stop: threading.Event) -> None:
    """Thread body: push ``fn(item)`` for each item, then an end or error marker."""

    def put(msg) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                q.put(msg, timeout=0.05)
                return True
        return False

    it = None
    try:
        it = iter(items)
        for item in it:
            if stop.is_set() or not put((_ITEM, fn(item) if fn is not None else item)):
                return
        put((_END, None))
    except BaseException as exc:  # handed to the consumer, which re-raises it
        put((_ERROR, exc))
    finally:
        close = getattr(it, "close", None)  # a generator's finally (VideoCapture.release) runs
        if close is not None:
            with contextlib.suppress(Exception):
                close()


class Prefetcher(Generic[T]):
    """Iterate ``items`` in a background thread, ``fn`` applied there, ``depth`` items ahead.

    Use as a context manager (or call close()): leaving early stops and joins the thread.
    An exception raised by the source or ``fn`` is re-raised by the consumer's next().
    """

    def __init__(self, items: Iterable[S], fn: Callable[[S], T] | None = None, depth: int = 2,
                 name: str = "icnseg-prefetch") -> None:
        """Start the thread at once; at most ``depth`` prepared items wait in the queue."""
        self._stop = threading.Event()
        if depth < 1:
            raise ConfigError(f"prefetch depth must be >= 1, got {depth}")
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._done = False
        # the thread gets no reference to self, so a dropped Prefetcher is collected (and stops)
        self.thread = threading.Thread(target=_produce, args=(items, fn, self._q, self._stop),
                                       name=name, daemon=True)
        self.thread.start()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, value = self._q.get(timeout=0.1)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self._q.empty():
                    kind, value = _END, None  # cannot happen: the thread always says how it ended
                    break
        if kind == _ITEM:
            return value
        self._done = True
        self.thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self, timeout: float = 10.0) -> None:
        """Stop the producer and wait (up to ``timeout`` s) for its thread to end."""
        self._done = True
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()
