"""`icnseg run ... --ray`: the run flags for a Ray Data actor pool, and the command itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from icnseg.cli.bounds import Bound, add_bounded
from icnseg.errors import ConfigError

# flags that only mean something to the single-process run (videos, cameras, prefetch thread)
_LOCAL_ONLY = {"frames": None, "every": 1, "prefetch": None, "frame_png": False}
_RAY_ONLY = {"ray_address": None, "workers": None, "gpus_per_worker": None,
             "cpus_per_worker": None, "batch_size": None, "coco": None}


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """Add --ray and its flags to the `run` parser."""
    g = p.add_argument_group("Ray Data (pip install 'icnseg[ray]')")
    g.add_argument("--ray", action="store_true",
                   help="read and segment the images on Ray Data, in an actor pool (a local "
                   "cluster unless --ray-address or RAY_ADDRESS); images only")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="an existing Ray cluster (default: $RAY_ADDRESS, else a local one)")
    add_bounded(g, "--workers", "actors, each loading the model once (default: 1)",
                bound=Bound(int, 1, 4096), default=None, metavar="N")
    add_bounded(g, "--gpus-per-worker", "GPUs each actor reserves; fractions share a GPU "
                "(default: 0)", default=None, metavar="F")
    add_bounded(g, "--cpus-per-worker", "CPUs each actor reserves; Ray sets its thread count "
                "to it (default: 1)", default=None, metavar="F")
    add_bounded(g, "--batch-size", "images per actor call (default: 4)", default=None,
                metavar="B")
    g.add_argument("--coco", default=None, metavar="FILE",
                   help="also write all instances as one COCO results JSON file")


def check_ray_args(args: argparse.Namespace) -> None:
    """ConfigError for a Ray flag without --ray, or a single-process flag with it."""
    if not args.ray:
        given = [k for k, v in _RAY_ONLY.items() if getattr(args, k, v) != v]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --ray")
        return
    given = [k for k, v in _LOCAL_ONLY.items() if getattr(args, k, v) != v]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} is for videos and cameras in the "
                          "single-process run; --ray segments still images only")


def cmd_run_ray(args: argparse.Namespace) -> int:
    """Segment the inputs on Ray; print failures and the summary line; 1 if any failed.

    The driver resolves the settings (the model's recorded ones, ``--config``, the flags) and
    writes ``run.json``; the workers get those settings whole and write the records."""
    from functools import partial

    from icnseg.cli.run import RunSummary
    from icnseg.cli.segment_args import segment_overrides
    from icnseg.cli.settings_file import config_with_file
    from icnseg.distributed.ray_batch import PoolConfig
    from icnseg.distributed.ray_files import (
        FAILURES_FILE,
        expand_files,
        name_files,
        segment_files,
    )
    from icnseg.loader import auto_backend, check_device
    from icnseg.outdir import OutputDir
    from icnseg.output import run_file
    from icnseg.settings import config_from_dict

    pool = PoolConfig(**{k: getattr(args, k) for k in
                         ("workers", "batch_size", "cpus_per_worker", "gpus_per_worker")
                         if getattr(args, k) is not None})
    paths = expand_files(args.inputs)
    if args.backend in (None, "auto"):
        args.backend, why = auto_backend(args.model)
        print(f"backend: {args.backend} ({why})", file=sys.stderr)
    args.device = check_device(args.backend, args.device)
    settings = run_file.recorded_settings(run_file.model_path(args.model, args.backend))
    cfg = config_with_file(partial(config_from_dict, settings), args.config,
                           segment_overrides(args))
    run = run_file.run_record(args.model, args.backend, args.device, args.proposals, cfg)
    folders = [Path(i) for i in args.inputs if Path(i).is_dir()]
    # the single-process run's output-folder rules: never an input folder, never a folder of
    # foreign files without --force; every file is logged in the marker before the workers
    # write it (they run in other processes)
    with OutputDir(args.out, [*folders, *paths], force=args.force) as out_dir:
        run_file.write_run_file(out_dir, run)  # no --resume here: no kept one to check
        for name in name_files(paths).values():
            out_dir.claim(f"{name.stem}.json")
            out_dir.claim(f"{name.stem}.png")
        out_dir.claim(FAILURES_FILE)
        result = segment_files(args.model, paths, out_dir.path, backend=args.backend,
                               device=args.device, pool=pool,
                               overrides=run["segment"], proposals=args.proposals,
                               with_prm=args.prm_panel, address=args.ray_address,
                               coco_path=args.coco, log=lambda m: print(m, file=sys.stderr))
    summary = RunSummary(written=result.written, failed=result.failed,
                         instances=result.instances, seconds=result.seconds)
    print(summary.line(args.out))
    return 1 if summary.failed else 0
