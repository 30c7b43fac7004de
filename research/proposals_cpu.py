"""Built-in proposal speed and quality, and the stream with proposal workers, on this CPU.

    python -m research.proposals_cpu timing --out FILE.json          # ms at 96/224/448/1024
    python -m research.proposals_cpu stages --baseline REV --out FILE.json  # ms per stage
    python -m research.proposals_cpu oracle --data VOC_DIR --size S --out FILE.json
    python -m research.proposals_cpu stream --frames 300 --workers 0 1 2 --out FILE.json
    python -m research.proposals_cpu matcher --out FILE.json          # at 256/512/1024

``timing``: median ms of ``generate_proposals`` on synthetic images resized to each side
(one OpenCV thread, the first call of each size not timed). ``oracle``: mAP^r/ABO when every
GT instance takes its best built-in proposal by IoU (the proposals' ceiling), proposals made
from the image resized to ``--size`` long side and the chosen mask scaled back to the image.
``matcher``: the matching stage at 256/512/1024 px (N=1000, K=8), factored, dense, and the
per-pair loop at 256. ``stream``: ``icnseg run`` on a synthetic 256-px video with 0, 1, 2
proposal workers; every run must write the same instances as the inline one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from icnseg.fileio import write_text

SIZES = (96, 224, 448, 1024)


def _images(n: int, seed: int = 77) -> list[np.ndarray]:
    """``n`` synthetic 256-px shape images."""
    from icnseg.data.synth import render_sample

    rng = np.random.default_rng(seed)
    return [render_sample(rng, 256)[0] for _ in range(n)]


def baseline_generator(rev: str):
    """``generate_proposals`` of git revision ``rev`` (its generate.py and types.py), loaded
    from ``git show`` into private modules, to time before/after in one process."""
    import subprocess
    import sys
    import types

    root = Path(__file__).resolve().parents[1]
    mods = {}
    for name in ("types", "generate"):
        src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:icnseg/proposals/{name}.py"],
                             check=True, capture_output=True, text=True).stdout
        mod = types.ModuleType(f"_baseline_{name}")
        mod.__dict__["__name__"] = mod.__name__
        if name == "generate":  # its Proposals must be the old one too (old mask building)
            src = src.replace("from icnseg.proposals.types import Proposals", "")
            mod.__dict__["Proposals"] = mods["types"].Proposals
        sys.modules[mod.__name__] = mod
        exec(compile(src, f"{rev}:{name}.py", "exec"), mod.__dict__)  # our own git history
        mods[name] = mod
    return mods["generate"].generate_proposals


def time_proposals(sizes=SIZES, n: int = 6, repeat: int = 2, baseline: str | None = None
                   ) -> dict[str, Any]:
    """Median ms and proposal count of ``generate_proposals`` per image side (and of the
    ``baseline`` revision's, interleaved image by image, when given)."""
    from icnseg.proposals.generate import generate_proposals

    cv2.setNumThreads(1)
    gens = {"after": generate_proposals}
    if baseline:
        gens["before"] = baseline_generator(baseline)
    out: dict[str, Any] = {}
    for side in sizes:
        images = [cv2.resize(im, (side, side), interpolation=cv2.INTER_LINEAR)
                  for im in _images(n)]
        times: dict[str, list] = {k: [] for k in gens}
        counts: dict[str, list] = {k: [] for k in gens}
        for gen in gens.values():
            gen(images[0])  # warm-up
        for _ in range(repeat):
            for im in images:
                for k, gen in gens.items():
                    t0 = time.perf_counter()
                    counts[k].append(len(gen(im)))
                    times[k].append(time.perf_counter() - t0)
        out[str(side)] = {k: {"ms": 1e3 * float(np.median(times[k])),
                              "proposals": float(np.mean(counts[k]))} for k in gens}
        if baseline:
            out[str(side)]["speedup"] = out[str(side)]["before"]["ms"] / out[str(side)][
                "after"]["ms"]
    return out


STAGES = ("_oversegment", "_refine", "group_runs", "_hierarchy", "_graph_merge", "_histograms",
          "_mean_colour", "_adjacent_pairs", "_bboxes", "_shrink", "_unique_rows")


def stage_times(sizes=SIZES, n: int = 6, repeat: int = 2, baseline: str | None = None
                ) -> dict[str, Any]:
    """ms per image of every stage of ``generate_proposals`` (and of the ``baseline``
    revision's, interleaved image by image): the module's stage functions and
    ``Proposals.from_membership`` are wrapped with timers for the run, "other" is the rest."""
    import sys

    import icnseg.proposals.generate as after_mod

    cv2.setNumThreads(1)
    mods = {"after": after_mod}
    if baseline:
        baseline_generator(baseline)
        mods["before"] = sys.modules["_baseline_generate"]
    spent: dict[str, dict[str, float]] = {k: {} for k in mods}
    saved = []

    def timed(fn, key: str, name: str):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key][name] = spent[key].get(name, 0.0) + time.perf_counter() - t0
        return run

    for key, mod in mods.items():
        for name in STAGES:
            if hasattr(mod, name):
                saved.append((mod, name, getattr(mod, name)))
                setattr(mod, name, timed(getattr(mod, name), key, name))
        cls = mod.Proposals
        saved.append((cls, "from_membership", cls.__dict__["from_membership"]))
        cls.from_membership = staticmethod(timed(cls.from_membership, key, "from_membership"))
    out: dict[str, Any] = {}
    try:
        for side in sizes:
            images = [cv2.resize(im, (side, side), interpolation=cv2.INTER_LINEAR)
                      for im in _images(n)]
            for mod in mods.values():
                mod.generate_proposals(images[0])  # warm-up
            total = dict.fromkeys(mods, 0.0)
            for v in spent.values():
                v.clear()
            for _ in range(repeat):
                for im in images:
                    for key, mod in mods.items():
                        t0 = time.perf_counter()
                        mod.generate_proposals(im)
                        total[key] += time.perf_counter() - t0
            k = repeat * len(images)
            out[str(side)] = {}
            for key in mods:
                st = {name: 1e3 * v / k for name, v in sorted(spent[key].items(),
                                                               key=lambda x: -x[1])}
                st["other"] = 1e3 * total[key] / k - sum(st.values())
                out[str(side)][key] = {"total_ms": 1e3 * total[key] / k, "stages_ms": st}
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)
    return out


def oracle(data_dir: Path, size: int) -> dict[str, Any]:
    """mAP^r/ABO of the best built-in proposal per GT instance (by IoU at the proposals' size)."""
    from icnseg.benchmarks.ablation import oracle_prediction
    from icnseg.data.voc import VocDataset
    from icnseg.eval import ImageGroundTruth, evaluate
    from icnseg.proposals.generate import generate_proposals

    ds = VocDataset(data_dir, "val")
    preds, gts, secs = [], [], 0.0
    for i in range(len(ds)):
        s = ds[i]
        h, w = s.image.shape[:2]
        f = size / max(h, w)
        small = cv2.resize(s.image, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        t0 = time.perf_counter()
        props = generate_proposals(small)
        secs += time.perf_counter() - t0
        gts.append(ImageGroundTruth(s.id, s.instance_masks, s.instance_classes, s.ignore_mask))
        preds.append(oracle_prediction(s, props))
    m = evaluate(preds, gts, len(ds.classes), ds.classes)
    return {"size": size, "images": len(ds), "mAP_r@0.5": m["mAP_r"]["0.5"],
            "mAP_r@0.75": m["mAP_r"]["0.75"], "ABO": m["ABO"],
            "proposal_ms": 1e3 * secs / max(len(ds), 1)}


def stream(frames: int, workers: list[int], backend: str = "onnxruntime") -> dict[str, Any]:
    """Frames/s of ``icnseg run`` on one synthetic video per worker count; same instances."""
    from icnseg.benchmarks.agree import BenchmarkError
    from icnseg.cli.run import FrameSegmenter, run_sources
    from icnseg.cli.sources import make_sources
    from icnseg.loader import load
    from icnseg.output.run_file import run_record
    from research.stream_overlap import write_video

    model = load("default", backend=backend)
    cfg = model.segment_config()
    seg = FrameSegmenter(model, cfg)
    run = run_record("default", backend, model.device, "builtin", cfg)
    out: dict[str, Any] = {"frames": frames, "backend": backend, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="icnseg-prop-") as tmp:
        video = write_video(Path(tmp) / "clip.mp4", frames)
        ref = None
        for n in workers:
            dest = Path(tmp) / f"w{n}"
            kwargs = {"proposal_workers": n} if n else {}
            t0 = time.perf_counter()
            summary = run_sources(seg, make_sources([video]), dest, run,
                                  progress=False, log=lambda m: None, depth=0, **kwargs)
            secs = time.perf_counter() - t0
            if summary.failed:
                raise BenchmarkError(f"run failed: {summary.failed[0]}")
            got = [json.loads(f.read_text())["instances"]
                   for f in sorted((dest / video.stem).glob("*.json"))]
            ref = got if ref is None else ref
            out["runs"][str(n)] = {"fps": summary.frames / secs, "seconds": secs,
                                   "identical_to_inline": got == ref}
    return out


def matcher_sizes(sides=(256, 512, 1024), n: int = 1000, k: int = 8, loop_up_to: int = 256
                  ) -> dict[str, Any]:
    """ms of the matching stage at image-size resolutions, N proposals x K instances: maps
    upsampled from 96 px + E(V) + B(V) ("binarise"), Eq. 5 scores + arg-max with the
    superpixel factorisation and with dense masks, and the per-pair loop (small sides only)."""
    from icnseg.benchmarks.baseline import loop_scores
    from icnseg.benchmarks.micro import synthetic_matching
    from icnseg.matching import background_template, best_proposals, contour, match_scores
    from icnseg.proposals.types import Proposals
    from icnseg.settings import SegmentConfig
    from icnseg.upsample import upsample_maps

    m = SegmentConfig().match
    out = {}
    for side in sides:
        v, sp, member = synthetic_matching((side, side), n, k)
        small = np.stack([cv2.resize(x.astype(np.float32), (96, 96), interpolation=cv2.INTER_AREA)
                          for x in v])
        t0 = time.perf_counter()
        vb = upsample_maps(small, (side, side)) >= 0.5
        edge, bg = contour(vb, m.contour_width), background_template(vb, m)
        binarise = time.perf_counter() - t0
        row = {"binarise_ms": 1e3 * binarise}
        factored = Proposals.from_membership(sp, member, check=False)
        for label, props in (("factored", factored), ("dense", Proposals(factored.masks))):
            t0 = time.perf_counter()
            best_proposals(match_scores(vb, props, m, background=bg, edge=edge))
            row[f"{label}_ms"] = 1e3 * (time.perf_counter() - t0)
        if side <= loop_up_to:
            t0 = time.perf_counter()
            loop_scores(vb, edge, bg, factored.masks, m.alpha, m.beta, m.gamma)
            row["loop_ms"] = 1e3 * (time.perf_counter() - t0)
            row["speedup_factored_vs_loop"] = row["loop_ms"] / row["factored_ms"]
        out[str(side)] = row
    return {"n": n, "k": k, "sizes": out}


def main(argv=None) -> int:
    """Command-line entry (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("timing", "stages", "oracle", "stream", "matcher"))
    ap.add_argument("--data", type=Path)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--baseline", help="timing/stages: also time this git revision's "
                    "generator")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.what == "timing":
        result = time_proposals(baseline=args.baseline)
    elif args.what == "stages":
        result = stage_times(baseline=args.baseline)
    elif args.what == "oracle":
        result = oracle(args.data, args.size)
    elif args.what == "matcher":
        result = matcher_sizes()
    else:
        result = stream(args.frames, args.workers)
    write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
