"""`icnseg bench`: the command-line face of ``icnseg.benchmarks.bench`` (parsing only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from icnseg.cli.bounds import add_bounded
from icnseg.loader import (
    BACKENDS,
    ONNXRUNTIME,
    PROVIDERS,
    TORCH,
    USER_DEVICES,
    device_for,
    torch_available,
)


def _cmd_bench(args: argparse.Namespace) -> int:
    from icnseg.benchmarks.bench import BenchConfig, run_bench
    from icnseg.benchmarks.report import render_markdown, write_results

    if args.backend:
        backends = tuple(args.backend)
    elif torch_available():
        backends = (TORCH, ONNXRUNTIME)
    else:  # a runtime-only install, as the demo does
        backends = (ONNXRUNTIME,)
        print("bench: PyTorch not installed: --backend onnxruntime only", file=sys.stderr)
    if args.json:  # checked before the (long) run: the JSON and the .md beside it
        from icnseg.outdir import check_output_file, is_result_json

        check_output_file(args.json, "--json", replaceable=is_result_json)
        md = str(Path(args.json).with_suffix(".md"))
        check_output_file(md, "--json (its .md)",
                          replaceable=lambda p: is_result_json(p.with_suffix(".json")))
    device = args.device
    if args.provider is not None:  # ONNX Runtime's TensorRT provider is device "tensorrt"
        device = device_for(ONNXRUNTIME, args.device, args.provider)
    cfg = BenchConfig(model=args.model, backends=backends, device=device,
                      baseline=args.baseline, iters=args.iters, warmup=args.warmup,
                      images=tuple(args.images or ()), streams=args.streams,
                      cold=args.cold, micro=args.micro,
                      export=tuple(args.export) if args.export else None,
                      budget_frames=args.budget_frames, threads=args.threads)
    result = run_bench(cfg, log=lambda m: print(m, file=sys.stderr))
    print(render_markdown(result))
    if args.json:
        path, md = write_results(result, args.json)
        print(f"results written to {path} and {md}")
    if args.plot:
        from icnseg.benchmarks.plot import plot_stages

        print(f"plot written to {plot_stages(result, args.plot)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` on the top-level subcommands."""
    p = sub.add_parser("bench", help="latency/throughput per stage and end to end, "
                       "backends side by side (outputs checked equal first)")
    p.add_argument("model", help="checkpoint file, export directory or 'default'")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="repeatable (default: torch and onnxruntime; onnxruntime without torch)")
    p.add_argument("--device", default="cpu", choices=USER_DEVICES,
                   help="where the runtime backends run: cpu or cuda (default: cpu)")
    p.add_argument("--provider", default=None, choices=PROVIDERS,
                   help="ONNX Runtime's GPU execution provider: cuda or tensorrt (default: cuda)")
    p.add_argument("--baseline", action="store_true",
                   help="add the original PRM pipeline and report speed-ups over it")
    add_bounded(p, "--iters", "timed images per backend (default: 20)", default=20)
    add_bounded(p, "--warmup", "untimed images first (default: 3)", default=3)
    p.add_argument("--images", nargs="+", default=None,
                   help="image files or folders (default: the bundled sample images)")
    add_bounded(p, "--streams", "concurrent streams for the overlapped throughput (0: skip; "
                "default: 2)", default=2)
    p.add_argument("--cold", action=argparse.BooleanOptionalAction, default=True,
                   help="cold start and peak RSS in a fresh process per backend (default: on)")
    p.add_argument("--micro", action=argparse.BooleanOptionalAction, default=True,
                   help="with --baseline: matcher N=1000 K=8 and backward K=8 (default: on)")
    p.add_argument("--export", action="append", default=None,
                   help="export directory the runtime backends load (default: MODEL's; "
                        "outputs are still checked against torch); repeatable: several "
                        "exports (e.g. fp32 and int8) run side by side as onnxruntime[int8], "
                        "checked against the fp32 one with the precision's tolerance")
    add_bounded(p, "--budget-frames", "frames per video (96/224/448 px) of the per-frame "
                "budget table (0: skip; default: 10)", default=10, metavar="N")
    add_bounded(p, "--threads", "intra-op threads of every ONNX Runtime session and of "
                "PyTorch (default: each library's own, one per core)", default=None)
    p.add_argument("--json", default=None, help="write the result here (+ .md next to it)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="PNG of per-stage latency per backend (needs the 'plot' extra)")
    p.set_defaults(func=_cmd_bench)
