"""Soak: N video frames through `icnseg run` in a child process, its RSS sampled as it goes.

    python -m icnseg.benchmarks.soak --frames 10000 --json benchmarks/results/soak_cpu.json

writes a synthetic video of N frames (moving shapes, the model's input size), runs
``icnseg run MODEL VIDEO --out TMP`` and samples the child's VmRSS and its count of written
frame JSONs every ``--interval`` seconds. Reports fps, RSS at start / after warm-up / at the
end and the least-squares slope of RSS against frames after warm-up (KB per frame; a leak
shows as a steadily positive slope). The run is complete only if every frame has its JSON
and the annotated video was written.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.benchmarks.machine import machine_info
from icnseg.fileio import write_text

WARMUP_FRAMES = 500  # RSS before this many frames (allocator arenas, caches) is not fitted


def write_video(path: Path, frames: int, size: int = 96, fps: float = 25.0) -> None:
    """A synthetic MJPG video of ``frames`` frames: two shapes drifting over a gradient."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write an MJPG video")
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 255 // size, yy * 255 // size,
                           np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    for i in range(frames):
        img = background.copy()
        cx = int(size * (0.3 + 0.2 * np.sin(i / 40)))
        cy = int(size * (0.4 + 0.2 * np.cos(i / 55)))
        cv2.circle(img, (cx, cy), size // 6, (230, 40, 40), -1)
        x0 = int(size * (0.55 + 0.15 * np.cos(i / 30)))
        cv2.rectangle(img, (x0, size // 2), (x0 + size // 5, size // 2 + size // 5),
                      (40, 200, 60), -1)
        writer.write(img)
    writer.release()


def _rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB, None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_kb_per_frame(samples: Sequence[tuple[int, int]], warmup: int) -> float | None:
    """Least-squares slope of RSS (kB) over frames for samples at or after ``warmup`` frames."""
    pts = [(f, r) for f, r in samples if f >= warmup]
    if len(pts) < 3 or len({f for f, _ in pts}) < 2:
        return None
    f, r = np.array(pts, dtype=np.float64).T
    return float(np.polyfit(f, r, 1)[0])


def figures(samples: Sequence[tuple[int, int]], stamps: Sequence[float],
            warmup: int) -> dict[str, Any]:
    """fps between the first and last frame seen, RSS start / warm / end / max, slope."""
    live = [(f, r, t) for (f, r), t in zip(samples, stamps, strict=True) if f > 0]
    warm = [r for f, r in samples if f >= warmup]
    fps = ((live[-1][0] - live[0][0]) / (live[-1][2] - live[0][2])
           if len(live) > 1 and live[-1][2] > live[0][2] else None)
    return {
        "fps_steady": round(fps, 2) if fps else None,
        "rss_mb_start": round(live[0][1] / 1024, 1) if live else None,  # first frame out
        "rss_mb_warm": round(warm[0] / 1024, 1) if warm else None,
        "rss_mb_end": round(samples[-1][1] / 1024, 1) if samples else None,
        "rss_mb_max": round(max(r for _, r in samples) / 1024, 1) if samples else None,
        "warmup_frames": warmup,
        "slope_kb_per_frame": slope_kb_per_frame(samples, warmup),
    }


def soak(model: str, frames: int, interval: float, backend: str, work: Path,
         warmup: int = WARMUP_FRAMES, checkpoint: Path | None = None) -> dict[str, Any]:
    """Run the soak in ``work`` (video + outputs) and return its figures; the figures so far
    are rewritten to ``checkpoint`` every minute, so a soak stopped early still leaves them."""
    video = work / "soak.avi"
    write_video(video, frames)
    out = work / "out"
    args = ["run", model, str(video), "--out", str(out), "--backend", backend]
    cmd = [sys.executable, "-c", "import sys; from icnseg.cli import main; sys.exit(main())",
           *args]
    base = {"command": " ".join(["icnseg", *args]), "frames": frames}
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, int]] = []  # (frames written, RSS kB)
    stamps: list[float] = []
    saved = t0
    while child.poll() is None:
        rss = _rss_kb(child.pid)
        done = len(list((out / "soak").glob("*.json"))) if (out / "soak").is_dir() else 0
        if rss is not None:
            samples.append((done, rss))
            stamps.append(time.perf_counter() - t0)
            print(f"soak: {done}/{frames} frames, RSS {rss / 1024:.0f} MB", file=sys.stderr,
                  flush=True)
        if checkpoint is not None and time.perf_counter() - saved > 60 and samples:
            saved = time.perf_counter()
            partial = {**base, "frames_written": done, "complete": False,
                       "seconds": round(saved - t0, 1), **figures(samples, stamps, warmup),
                       "samples": samples}
            write_text(checkpoint, json.dumps(partial, indent=1) + "\n")
        time.sleep(interval)
    _, stderr = child.communicate()
    written = len(list((out / "soak").glob("*.json")))
    annotated = sorted(p.name for p in out.glob("soak.*") if p.is_file())
    return {
        **base,
        "frames_written": written,
        "annotated_video": annotated,
        "exit_code": child.returncode,
        "stderr_tail": stderr.strip().splitlines()[-3:],
        "seconds": round(time.perf_counter() - t0, 1),
        **figures(samples, stamps, warmup),
        "samples": samples,
        "complete": child.returncode == 0 and written == frames and bool(annotated),
    }


def markdown(result: dict[str, Any]) -> str:
    """A short table of the figures (and whether the run completed)."""
    m = result.get("machine", {})
    rows = [("frames written", f"{result['frames_written']} of {result['frames']}"
             + ("" if result.get("complete") else " (run stopped before the end)")),
            ("steady fps", result.get("fps_steady")),
            ("RSS at first frame (MB)", result.get("rss_mb_start")),
            (f"RSS at {result['warmup_frames']} frames (MB)", result.get("rss_mb_warm")),
            ("RSS at the end (MB)", result.get("rss_mb_end")),
            ("RSS max (MB)", result.get("rss_mb_max")),
            ("RSS slope after warm-up (KB/frame)",
             None if result.get("slope_kb_per_frame") is None
             else f"{result['slope_kb_per_frame']:.2f}")]
    lines = ["# Soak: video frames through `icnseg run`", "",
             f"`{result['command']}`", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores "
             "(shared with other jobs while it ran)", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [f"\n{result[k]}" for k in ("code", "note") if result.get(k)]  # added by hand
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the soak, print the figures, optionally write them as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None,
                   help="export dir or checkpoint (default: the shipped export)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=int, default=WARMUP_FRAMES)
    p.add_argument("--json", default=None, help="write the result here (+ .md beside it)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only write the .md of an earlier result file")
    args = p.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        write_text(Path(args.render).with_suffix(".md"), markdown(result))
        return 0
    if args.frames < 1 or args.interval <= 0 or args.warmup < 0:
        p.error("--frames >= 1, --interval > 0, --warmup >= 0")
    from icnseg.loader import ASSETS

    model = args.model or str(ASSETS / "export")
    with tempfile.TemporaryDirectory(prefix="icnseg-soak-") as tmp:
        result = soak(model, args.frames, args.interval, args.backend, Path(tmp), args.warmup,
                      checkpoint=Path(args.json) if args.json else None)
    result["machine"] = machine_info()
    summary = {k: v for k, v in result.items() if k not in ("samples", "machine")}
    print(json.dumps(summary, indent=1))
    if args.json:
        write_text(args.json, json.dumps(result, indent=1) + "\n")
        write_text(Path(args.json).with_suffix(".md"), markdown(result))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
