"""Where a video frame's time goes in ``icnseg run``: the per-frame budget table of the bench.

A synthetic video is written at each side (96, 224, 448 px square), then every frame goes
through what ``icnseg run`` does inline: decode (OpenCV), resize + normalise, built-in
proposals (at the frame's size), PRM, ICN x T, match (binarise + Eq. 5), NMS (+ masks back to
the frame), write (JSON + overlay + the annotated video). Mean ms per stage and frame.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.benchmarks.timing import StageTimer

BUDGET_SIDES = (96, 224, 448)
# table column -> the Segmenter clock stages it sums
COLUMNS = {
    "decode": (),
    "resize": ("preprocess",),
    "proposals": ("proposals",),
    "prm": ("prm", "prm_forward", "prm_backward"),
    "icn": ("icn",),
    "match": ("binarise", "matcher"),
    "nms": ("nms", "postprocess"),
    "write": (),
}


def write_video(path: Path, frames: int, side: int, seed: int = 0) -> Path:
    """An mp4 of ``frames`` synthetic shape scenes at ``side`` x ``side``."""
    from icnseg.data.synth import render_sample
    from icnseg.output.video import quiet_ffmpeg

    quiet_ffmpeg()  # before this process's first FFmpeg use, or the codec probes print
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (side, side))
    for _ in range(frames):
        image = render_sample(rng, 256)[0]
        image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _one_video(model: Any, cfg: Any, video: Path, out: Path) -> dict[str, float]:
    """Mean ms per column over the frames of ``video`` (the first frame is not counted)."""
    from icnseg.output.overlay import render_overlay
    from icnseg.output.record import instances_to_json, write_json
    from icnseg.output.video import VideoOutput

    cap = cv2.VideoCapture(str(video))
    sums = dict.fromkeys(COLUMNS, 0.0)
    counted = 0
    try:
        writer = VideoOutput(out / f"{video.stem}.mp4", 25.0)
        for index in itertools.count():
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                break
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            decode = time.perf_counter() - t0
            timer = StageTimer()
            prepared = model.prepare(image, None, clock=timer, config=cfg)
            instances = model.select(prepared, model.infer(prepared, cfg, timer), cfg, timer)
            t0 = time.perf_counter()
            record = instances_to_json(f"{video.name}#{index:06d}", *image.shape[:2],
                                       instances)
            write_json(out / f"{index:06d}.json", record)
            writer.write(render_overlay(image, instances))
            write = time.perf_counter() - t0
            if index == 0:
                continue  # warm-up: lazy initialisation of OpenCV and the sessions
            counted += 1
            sums["decode"] += decode
            sums["write"] += write
            for col, stages in COLUMNS.items():
                sums[col] += sum(timer.seconds.get(s, 0.0) for s in stages)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        cap.release()
    return {col: 1e3 * v / max(counted, 1) for col, v in sums.items()} | {"frames": counted}


def frame_budget(model: Any, cfg: Any, frames: int = 10, sides: Sequence[int] = BUDGET_SIDES
                 ) -> dict[str, Any]:
    """{side: {column: mean ms per frame, "total": ..., "frames": n}} for ``model``."""
    out: dict[str, Any] = {"backend": model.backend, "iterations": cfg.iterations}
    with tempfile.TemporaryDirectory(prefix="icnseg-budget-") as tmp:
        for side in sides:
            d = Path(tmp) / str(side)
            d.mkdir()
            video = write_video(d / f"clip{side}.mp4", frames + 1, side)
            row = _one_video(model, cfg, video, d)
            row["total"] = sum(row[c] for c in COLUMNS)
            out[str(side)] = row
    return out


def budget_markdown(budget: dict[str, Any]) -> list[str]:
    """The budget as markdown lines (one row per video side)."""
    t = budget["iterations"]
    cols = [c if c != "icn" else f"ICN x{t}" for c in COLUMNS]
    lines = [f"Per-frame budget of `icnseg run` on a synthetic video ({budget['backend']}, "
             "inline, mean ms per frame):", "",
             "| video | " + " | ".join(cols) + " | total | frames/s |",
             "|---|" + "---:|" * (len(cols) + 2)]
    for side, row in budget.items():
        if not isinstance(row, dict):
            continue
        cells = " | ".join(f"{row[c]:.1f}" for c in COLUMNS)
        lines.append(f"| {side}x{side} | {cells} | {row['total']:.1f} | "
                     f"{1e3 / row['total']:.1f} |")
    return lines
