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
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from icnseg.cli.capture import CaptureSource, capture_stem, stream_kind
from icnseg.cli.frame import Frame
from icnseg.data.images import IMAGE_SUFFIXES
from icnseg.errors import ConfigError, IcnsegError, InputError
from icnseg.output.run_file import RUN_FILE

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv")
_CAMERA = re.compile(r"cam(?:era)?:(.*)", re.IGNORECASE)


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


def expand_inputs(inputs: Sequence[str]) -> list[Path | int | str]:
    """Files, folders (images and videos, sorted), globs, camera indices, stream URLs and
    GStreamer pipelines (kept as str); nothing found errs."""
    out: list[Path | int | str] = []
    for item in inputs:
        cam = camera_index(item)
        p = Path(item)
        if stream_kind(item) is not None:
            out.append(item)
        elif cam is not None:
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
        if isinstance(item, (int, str)) or is_video(item):
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


def _unique(stem: str, seen: dict[str, int]) -> str:
    n = seen.get(stem, 0)
    seen[stem] = n + 1
    return stem if n == 0 else f"{stem}-{n}"


def make_sources(items: Sequence[Path | int | str], max_frames: int | None = None,
                 every: int = 1) -> list[ImageSource | CaptureSource]:
    """Group expand_inputs() items into sources (runs of images share one); stems unique,
    never ``run`` (the folder's run.json: an image run.jpg gets stem run-1)."""
    seen: dict[str, int] = {Path(RUN_FILE).stem: 1}
    sources: list[ImageSource | CaptureSource] = []
    for item in items:
        if isinstance(item, (int, str)) or is_video(item):
            sources.append(CaptureSource(item, _unique(capture_stem(item), seen), max_frames,
                                         every))
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
