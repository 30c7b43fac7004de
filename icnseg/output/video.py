"""Annotated videos written atomically with OpenCV."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.errors import OutputError
from icnseg.fileio import atomic_path

# Annotated-video codecs, tried in order: H.264 in MP4 (plays in browsers; needs an OpenCV
# whose FFmpeg has an H.264 encoder, which pip's wheels lack), MPEG-4 Part 2 in MP4 (every
# FFmpeg-enabled OpenCV, incl. the headless wheels), Motion-JPEG in AVI (always there).
VIDEO_CODECS = (("avc1", ".mp4"), ("mp4v", ".mp4"), ("MJPG", ".avi"))


def quiet_ffmpeg() -> None:
    """Silence FFmpeg's own log lines (icnseg reports failures itself); effective when called
    before OpenCV first uses FFmpeg in this process. OPENCV_FFMPEG_LOGLEVEL, if set, wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


class VideoOutput:
    """An annotated video written atomically: frames go to a hidden temp file beside the final
    name; close() renames it there, abort() (or leaving a ``with`` on an error) removes it.
    OpenCV's encoders drop the last row / column of an odd-sized frame (4:2:0 needs even)."""

    def __init__(self, path: str | os.PathLike, fps: float,
                 codecs: Sequence[tuple[str, str]] = VIDEO_CODECS) -> None:
        """``path``'s suffix is replaced by the suffix of the first codec that can write."""
        self.path, self.fps, self.codecs = Path(path), float(fps), tuple(codecs)
        self.frames = 0
        self.codec: str | None = None  # fourcc in use, once the first frame is written
        self.size: tuple[int, int] | None = None  # (width, height) of the file
        self._writer: Any = None
        self._cm: Any = None  # the fileio.atomic_path context of the final name
        self._tmp = self._video_tmp = self.path

    def _open(self, width: int, height: int) -> None:
        for fourcc, suffix in self.codecs:
            final = self.path.with_suffix(suffix)
            cm = atomic_path(final)
            tmp = cm.__enter__()
            # the writer picks its container from the name, so it writes "<tmp><suffix>"
            video_tmp = tmp.with_name(tmp.name + suffix)
            quiet_ffmpeg()
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # probing codecs
            try:
                writer = cv2.VideoWriter(
                    str(video_tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height)
                )
            finally:
                cv2.utils.logging.setLogLevel(level)
            if writer.isOpened():
                self._writer, self._cm, self._tmp, self._video_tmp = writer, cm, tmp, video_tmp
                self.path, self.codec, self.size = final, fourcc, (width, height)
                return
            writer.release()
            self._discard(cm, video_tmp)
        raise OutputError(f"{self.path}: OpenCV cannot write a {width}x{height} video here "
                          f"(tried {', '.join(c for c, _ in self.codecs)})")

    @staticmethod
    def _discard(cm: Any, video_tmp: Path) -> None:
        with contextlib.suppress(OSError):
            video_tmp.unlink()
        exc = OutputError("video discarded")
        cm.__exit__(OutputError, exc, None)  # atomic_path removes its temp file

    def write(self, image_rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame (resized to the video's size if it differs)."""
        h, w = image_rgb.shape[:2]
        if self._writer is None:
            if self.codec is not None:
                raise OutputError(f"{self.path}: video already closed")
            self._open(w, h)
        if (w, h) != self.size:
            image_rgb = cv2.resize(image_rgb, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it onto its final name; None if no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        try:
            os.replace(self._video_tmp, self._tmp)
        except OSError as exc:
            self._discard(self._cm, self._video_tmp)
            raise OutputError(f"{self.path}: OpenCV wrote no video file ({exc})") from exc
        self._cm.__exit__(None, None, None)  # atomic_path renames it onto self.path
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file; nothing appears under the final name."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._discard(self._cm, self._video_tmp)

    def __enter__(self) -> VideoOutput:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
