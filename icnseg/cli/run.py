"""`icnseg run` / `icnseg demo`: segment images, videos and cameras; write JSON + overlays.

Frames come from ``icnseg.cli.sources`` through a prefetch thread that also does the host-side
preparation (decode, resize to the model input, proposals), so it overlaps the networks.
Images get ``<stem>.json`` + ``<stem>.png``; a video or camera gets ``<stem>/<frame>.json``
per frame and one annotated video ``<stem>.mp4``. A bad input fails alone, never the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.cli.sources import (
    CaptureSource,
    Frame,
    ImageSource,
    Prefetcher,
    iter_frames,
)
from icnseg.errors import ConfigError, IcnsegError
from icnseg.outdir import OutputDir

PREFETCH_DEPTH = 3  # frames decoded and prepared ahead of the one being segmented


@dataclass
class RunSummary:
    """What a run did: written stems, failures (input, message), instances, frames, videos."""

    written: list[str] = field(default_factory=list)  # image stems
    failed: list[tuple[str, str]] = field(default_factory=list)
    instances: int = 0
    seconds: float = 0.0
    skipped: int = 0  # images whose whole results --resume kept
    frames: int = 0  # video / camera frames segmented
    streams: int = 0  # video / camera inputs seen
    videos: list[str] = field(default_factory=list)  # annotated videos written
    codecs: list[str] = field(default_factory=list)  # the fourcc each video was written with

    def line(self, out_dir: str | os.PathLike) -> str:
        """One summary line for the terminal."""
        parts = [f"{len(self.written)} image(s)"] if self.written or not self.streams else []
        if self.streams:
            parts.append(f"{self.frames} frame(s) of {self.streams} video(s)")
        kept = f" ({self.skipped} kept from the earlier run)" if self.skipped else ""
        done = len(self.written) + self.frames
        rate = f" ({done / self.seconds:.2f} images/s)" if done and self.seconds > 0 else ""
        return (
            f"{' + '.join(parts)} segmented{kept}, {self.instances} instance(s), "
            f"{len(self.failed)} failed, {self.seconds:.1f}s{rate} -> {out_dir}"
        )


class FrameSegmenter:
    """A Segmenter with fixed settings, split the way ``run_sources`` uses it: ``prepare``
    (host only, thread-safe: resize and proposals) in the prefetch thread, ``segment``
    (networks, matching, NMS) in the main one."""

    def __init__(self, model, cfg, with_prm: bool = False) -> None:
        """``model``: any Segmenter (``icnseg.load``); ``cfg``: its SegmentConfig."""
        self.model, self.cfg, self.with_prm = model, cfg, with_prm

    def prepare(self, image: np.ndarray, proposals=None):
        """Check and resize the image; make (or resize the given) proposals."""
        return self.model.prepare(image, proposals, config=self.cfg)

    def segment(self, prepared) -> tuple[list, np.ndarray | None]:
        """Instances at the frame's size, and the naive PRMs [K, h, w] if a panel is asked."""
        stages = self.model.infer(prepared, self.cfg)
        instances = self.model.select(prepared, stages, self.cfg)
        return instances, (stages.prm if self.with_prm else None)

    def __call__(self, image: np.ndarray, proposals=None) -> tuple[list, np.ndarray | None]:
        return self.segment(self.prepare(image, proposals))


def _preparer(segment_fn: Callable, proposals: str) -> Callable[[Frame], Frame]:
    """The per-frame work of the prefetch thread: proposals (from a folder) and ``prepare``."""
    from icnseg.proposals.loaders import load_proposals_for

    prepare = getattr(segment_fn, "prepare", None)

    def fn(frame: Frame) -> Frame:
        if frame.error is None:
            try:
                shape = frame.image.shape[:2]
                props = (frame.proposals if proposals == "builtin"
                         else load_proposals_for(proposals, frame.key, shape))
                frame.data = (prepare(frame.image, props) if prepare is not None
                              else (frame.image, props))
            except IcnsegError as exc:
                frame.error = exc
        return frame

    return fn


class _Writer:
    """Writes each segmented frame: image JSON + PNG, or frame JSON + annotated video."""

    def __init__(self, out: OutputDir, frame_png: bool, run: dict[str, Any] | None) -> None:
        """``run``: the folder's run.json, written before the first record (None: kept)."""
        self.dir, self.frame_png, self.run = out, frame_png, run
        self.out = out.path
        self.video = None
        self.source = None

    def switch(self, source, summary: RunSummary) -> None:
        """Finish the previous source's video; count video / camera inputs."""
        self.finish(summary)
        self.source = source
        summary.streams += source.kind != "images"

    def finish(self, summary: RunSummary) -> None:
        """Finalise the annotated video of the current source (if it has frames)."""
        video, self.video = self.video, None
        if video is not None and (path := video.close()) is not None:
            summary.videos.append(str(path))
            summary.codecs.append(str(video.codec))

    def abort(self, interrupted: bool, summary: RunSummary) -> None:
        """Drop an unfinished video; a camera stopped by Ctrl-C keeps what it recorded."""
        if interrupted and self.source is not None and self.source.live:
            self.finish(summary)
        elif self.video is not None:
            self.video.abort()
            self.video = None

    def write(self, frame: Frame, instances, prm) -> None:
        """Write the outputs of one segmented frame."""
        from icnseg.output.overlay import render_overlay
        from icnseg.output.record import instances_to_json, write_json, write_png, write_result
        from icnseg.output.run_file import write_run_file
        from icnseg.output.video import VideoOutput

        if self.run is not None:
            write_run_file(self.dir, self.run)
            self.run = None
        if frame.source.kind == "images":
            self.dir.claim(f"{frame.stem}.json")
            self.dir.claim(f"{frame.stem}.png")
            write_result(self.out, frame.stem, frame.image, instances, prm=prm,
                         image_name=frame.name)
            return
        h, w = frame.image.shape[:2]
        record = instances_to_json(frame.name, h, w, instances)
        overlay = render_overlay(frame.image, instances, prm=prm)
        write_json(self.dir.claim(f"{frame.stem}.json"), record)
        if self.frame_png:
            write_png(self.dir.claim(f"{frame.stem}.png"), overlay)
        if self.video is None:
            for suffix in (".mp4", ".avi"):  # VideoOutput falls back to MJPG .avi
                self.dir.claim(f"{frame.source.stem}{suffix}")
            self.video = VideoOutput(self.out / f"{frame.source.stem}.mp4",
                                     frame.source.output_fps)
        self.video.write(overlay)


@contextlib.contextmanager
def _frames(sources: Sequence, prepare: Callable[[Frame], Frame], depth: int,
            pool=None) -> Iterator:
    """Prepared frames: ``depth`` ahead in a Prefetcher thread, or inline when depth is 0;
    with a ProposalPool their built-in proposals are made ahead in its processes."""
    with contextlib.closing(iter_frames(sources)) as decoded:
        items = pool.frames(decoded) if pool is not None else decoded
        if depth > 0:
            with Prefetcher(items, prepare, depth) as frames:
                yield frames
            return
        yield map(prepare, items)


def _pool(workers: int, proposals: str, segment_fn: Callable):
    """A ProposalPool for ``--proposal-workers`` (None for 0); built-in proposals only."""
    if not workers:
        return contextlib.nullcontext()
    from icnseg.cli.proposal_pool import ProposalPool

    if proposals != "builtin":
        raise ConfigError(f"--proposal-workers makes built-in proposals; with --proposals "
                          f"{proposals} there is nothing for them to make (drop one flag)")
    from icnseg.settings import SegmentConfig

    cfg = getattr(segment_fn, "cfg", None) or SegmentConfig()
    return ProposalPool(workers, cfg.match_max_side)


def _note_large(frame: Frame, log: Callable[[str], None]) -> None:
    """One line when a still image is so large that full-size decoding dominates the run."""
    from icnseg.data.images import LARGE_IMAGE_PIXELS

    if frame.image is not None and frame.source.kind == "images":
        h, w = frame.image.shape[:2]
        if h * w > LARGE_IMAGE_PIXELS:
            log(f"icnseg: note: {frame.origin}: {w}x{h} image ({h * w / 1e6:.0f} MP) is "
                "decoded, matched and drawn at full size: slow and memory-hungry; "
                "downscale it for speed")


def _inputs(sources: Sequence[ImageSource | CaptureSource]) -> list[Path | int]:
    """The input files and cameras of ``sources`` (for the --out checks)."""
    out: list[Path | int] = []
    for source in sources:
        if isinstance(source, ImageSource):
            out.extend(source.paths)
        elif isinstance(getattr(source, "target", None), Path):
            out.append(source.target)
    return out


def _skip_kept(sources: Sequence, out: OutputDir, summary: RunSummary) -> list:
    """``sources`` without the images whose whole results --resume kept."""
    kept = []
    for source in sources:
        if isinstance(source, ImageSource):
            todo = [(p, s) for p, s in zip(source.paths, source.stems, strict=True)
                    if not out.has_whole(f"{s}.json", f"{s}.png")]
            summary.skipped += len(source.paths) - len(todo)
            if not todo:
                continue
            source = ImageSource([p for p, _ in todo], [s for _, s in todo])
        kept.append(source)
    return kept


def _known_total(sources: Sequence) -> int | None:
    """Frames the run will produce when known up front (still images, capped videos), for
    the progress bar's total and ETA; None when a video or camera has no known length."""
    total = 0
    for source in sources:
        if source.kind == "images":
            total += len(source.paths)
        elif getattr(source, "max_frames", None) is not None:
            total += source.max_frames
        else:
            return None
    return total


def run_sources(
    segment_fn: Callable,
    sources: Sequence[ImageSource | CaptureSource],
    out_dir: str | os.PathLike | OutputDir,
    run: dict[str, Any],
    proposals: str = "builtin",
    progress: bool = True,
    log: Callable[[str], None] = print,
    frame_png: bool = False,
    depth: int = PREFETCH_DEPTH,
    proposal_workers: int = 0,
) -> RunSummary:
    """Segment every frame with ``segment_fn(image, proposals) -> (instances, prm|None)``
    (its ``prepare`` half, if any, runs in the prefetch thread) and write the outputs;
    ``proposal_workers`` processes make the built-in proposals ahead. ``run`` (what ran:
    ``output.run_file.run_record``) is checked against a kept ``run.json`` first, and written
    as the folder's ``run.json`` before the first record.

    ``out_dir``: an opened OutputDir, or a path opened here with the default rules (no
    --force, no --resume)."""
    from tqdm import tqdm

    summary = RunSummary()
    if not isinstance(out_dir, OutputDir):
        with OutputDir(out_dir, _inputs(sources)) as opened:
            return run_sources(segment_fn, sources, opened, run, proposals, progress, log,
                               frame_png, depth, proposal_workers)
    from icnseg.output.run_file import check_run_file

    writer = _Writer(out_dir, frame_png, run if check_run_file(out_dir, run) else None)
    sources = _skip_kept(sources, out_dir, summary)
    segment = getattr(segment_fn, "segment", None) or (lambda data: segment_fn(*data))
    t0 = time.perf_counter()
    try:
        with (
            _pool(proposal_workers, proposals, segment_fn) as pool,
            _frames(sources, _preparer(segment_fn, proposals), depth, pool) as frames,
            tqdm(frames, desc="segment", unit="image", total=_known_total(sources),
                 disable=None if progress else True, leave=True, dynamic_ncols=True) as bar,
        ):
            for frame in bar:
                if frame.source is not writer.source:
                    writer.switch(frame.source, summary)
                _note_large(frame, log)
                try:
                    if frame.error is not None:
                        raise frame.error
                    instances, prm = segment(frame.data)
                    writer.write(frame, instances, prm)
                except IcnsegError as exc:
                    msg = str(exc)
                    if frame.source.kind != "images" and not msg.startswith(frame.origin):
                        msg = f"{frame.name}: {msg}"  # name the frame the error belongs to
                    summary.failed.append((frame.origin, msg))
                    log(f"icnseg: error: {msg}")
                    continue
                if frame.source.kind == "images":
                    summary.written.append(frame.stem)
                else:
                    summary.frames += 1
                summary.instances += len(instances)
        writer.finish(summary)
    except BaseException as exc:
        writer.abort(isinstance(exc, KeyboardInterrupt), summary)
        raise
    summary.seconds = time.perf_counter() - t0
    return summary
