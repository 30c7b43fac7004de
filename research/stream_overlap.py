"""Does `icnseg run` overlap decoding + proposals of the next frame with the current one?

    python -m research.stream_overlap --frames 40 --backend onnxruntime

Writes a synthetic video (shapes from ``icnseg.data.synth``), then runs ``run.run_sources``
on it twice in one process (after a warm-up): ``inline`` (prefetch depth 0: decode, resize +
built-in proposals, segment, write, one frame after the other) and ``prefetch`` (depth 3: a
thread prepares the next frames while the current one is segmented and written). Both must
write the same instances for every frame before a time is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.benchmarks.agree import BenchmarkError
from icnseg.benchmarks.machine import machine_info


def write_video(path: Path, frames: int, size: int = 256, seed: int = 0) -> Path:
    """An mp4 of ``frames`` synthetic shape images (one scene per frame)."""
    from icnseg.data.synth import render_sample

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    for _ in range(frames):
        image, _, _ = render_sample(rng, size)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _load(backend: str) -> tuple[Any, Any, Any]:
    """(model, segment config, FrameSegmenter) for the default model on ``backend``."""
    from icnseg.cli.run import FrameSegmenter
    from icnseg.loader import load

    model = load("default", backend=backend)
    cfg = model.segment_config()
    return model, cfg, FrameSegmenter(model, cfg)


def timed_run(segmenter: Any, cfg: Any, video: Path, out: Path, depth: int
              ) -> tuple[float, list[list[str]]]:
    """Seconds and per-frame class lists of ``run_sources`` with prefetch ``depth``."""
    from icnseg.cli.run import run_sources
    from icnseg.cli.sources import make_sources
    from icnseg.output.run_file import run_record

    model = segmenter.model
    run = run_record("default", model.backend, model.device, "builtin", cfg)
    t0 = time.perf_counter()
    summary = run_sources(segmenter, make_sources([video]), out, run,
                          progress=False, log=lambda m: None, depth=depth)
    seconds = time.perf_counter() - t0
    if summary.failed:
        raise BenchmarkError(f"run_sources failed: {summary.failed[0]}")
    frames = sorted((out / video.stem).glob("*.json"))
    return seconds, [[i["class"] for i in json.loads(f.read_text())["instances"]]
                     for f in frames]


def measure(frames: int = 40, backend: str = "onnxruntime") -> dict[str, Any]:
    """Frames/s of both ways on the same video; BenchmarkError if their instances differ."""
    _, cfg, segmenter = _load(backend)
    with tempfile.TemporaryDirectory(prefix="icnseg-stream-") as tmp:
        video = write_video(Path(tmp) / "clip.mp4", frames)
        timed_run(segmenter, cfg, video, Path(tmp) / "warm", 0)  # sessions, caches
        seq_s, seq = timed_run(segmenter, cfg, video, Path(tmp) / "inline", 0)
        pre_s, pre = timed_run(segmenter, cfg, video, Path(tmp) / "prefetch", 3)
    if seq != pre or not seq:
        raise BenchmarkError("the prefetching run wrote other instances than the inline one")
    return {"backend": backend, "frames": len(seq), "inline_fps": len(seq) / seq_s,
            "prefetch_fps": len(pre) / pre_s, "speedup": seq_s / pre_s,
            "machine": machine_info()}


def main(argv: Sequence[str] | None = None) -> int:
    """Print (and optionally write) the measurement."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    r = measure(args.frames, args.backend)
    print(f"{r['backend']}, {r['frames']} frames: inline {r['inline_fps']:.2f} fps, "
          f"prefetch {r['prefetch_fps']:.2f} fps ({r['speedup']:.2f}x)")
    if args.json:
        from icnseg.fileio import write_text

        write_text(args.json, json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
