"""`icnseg build-engine DIR`: TensorRT engines for an export directory (thin CLI front end)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from icnseg.cli.bounds import BOUNDS, add_bounded
from icnseg.cli.util import human_bytes
from icnseg.errors import ConfigError

REMOVED_FLAGS = ("fp16", "int8", "calib")


def refuse_precision_flags(args: argparse.Namespace) -> None:
    """ConfigError for --fp16/--int8/--calib: engines are strongly typed, the export decides."""
    given = [f"--{f}" for f in REMOVED_FLAGS if getattr(args, f, None)]
    if given:
        raise ConfigError(f"{'/'.join(given)}: build-engine builds strongly typed engines in "
                          f"the export's precision; export with `icnseg export MODEL --out DIR "
                          "--precision fp16` (or `--precision int8 --calib IMAGES`) instead")


def cmd_build_engine(args: argparse.Namespace) -> int:
    """Build (or reuse) the engines and print what was done."""
    from icnseg.export.engine import build_engines

    refuse_precision_flags(args)
    t0 = time.perf_counter()
    results = build_engines(args.dir, dla_core=args.dla,
                            workspace_mb=args.workspace, timing_cache=args.timing_cache,
                            force=args.force, log=print,
                            size_range=((args.sizes[0], args.sizes[1]), (args.sizes[2],
                                                                         args.sizes[3]))
                            if args.sizes else None)
    for r in results:
        what = "reused" if r.reused else "built "
        why = f"  (rebuilt: {r.rebuilt_because})" if r.rebuilt_because else ""
        print(f"{what} {r.role}.onnx -> {r.path}  {human_bytes(r.bytes)}, {r.precision}, "
              f"{r.seconds:.1f}s{why}")
    print(f"engines ready in {time.perf_counter() - t0:.1f}s")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `build-engine` on the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "build-engine", help="TensorRT engines for an export directory (cached per GPU)",
        description="Build TensorRT engines for DIR/prm.onnx and DIR/icn.onnx into DIR/engines. "
        "Networks are strongly typed: the engine's precision is the export's "
        "(icnseg export --precision fp32|fp16|int8). "
        "Engines are keyed by ONNX sha256 + TensorRT version + GPU + settings: a second build "
        "is instant, a stale or corrupt engine is rebuilt.")
    p.add_argument("dir", metavar="DIR", help="export directory (from `icnseg export`)")
    # Kept only to answer with the way that replaced them (icnseg export --precision).
    p.add_argument("--fp16", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--int8", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--calib", default=None, help=argparse.SUPPRESS)
    add_bounded(p, "--dla", "run on Jetson DLA core N, GPU fallback on (needs an fp16 or int8 "
                "export)", metavar="N", default=None)
    add_bounded(p, "--workspace", "builder workspace limit in MB (default: TensorRT's)",
                metavar="MB", default=None)
    p.add_argument("--timing-cache", metavar="FILE", default=None,
                   help="timing cache file (default: DIR/engines/timing.<gpu+trt>.cache)")
    add_bounded(p, "--sizes", "H/W profile range of a --dynamic-size icn.onnx (default: the "
                "export's input size)", BOUNDS["size"], nargs=4,
                metavar=("HMIN", "WMIN", "HMAX", "WMAX"), default=None)
    p.add_argument("--force", action="store_true", help="rebuild even when a valid engine exists")
    p.set_defaults(func=cmd_build_engine)
    return p
