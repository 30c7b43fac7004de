"""`icnseg serve MODEL`: the model behind Triton Inference Server (thin CLI front end)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from icnseg.cli.bounds import add_bounded
from icnseg.errors import ConfigError


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model through the one loader and serve it until SIGTERM / Ctrl-C."""
    from icnseg.cli.segment_args import load_for_cli
    from icnseg.serve.server import ServeConfig, import_pytriton, serve

    cfg = ServeConfig(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                      metrics_port=args.metrics_port, max_batch=args.max_batch,
                      batch_delay_us=args.batch_delay_us)
    if args.proposals != "builtin" or args.prm_panel:
        raise ConfigError("--proposals DIR and --prm-panel are for `icnseg run`; a request "
                          "brings its own proposals (input 'proposals')")
    import_pytriton()  # fail on a missing extra before loading the model
    model, segment_cfg = load_for_cli(args.model, args)
    try:
        serve(model, segment_cfg, cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        model.close()
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve` on the CLI's subparsers; returns its parser."""
    from icnseg.cli.segment_args import add_segment_args

    p = subparsers.add_parser(
        "serve", help="serve the model with Triton Inference Server (pip install "
        "'icnseg[serve]')",
        description="Serve MODEL as the Triton model 'icnseg' (inputs image uint8 HxWx3 or "
        "image_bytes, optional proposals uint8 NxHxW; outputs count, class_id, class_name, "
        "score, bbox, mask (COCO-RLE counts), image_size) with dynamic batching, health, "
        "readiness and metrics endpoints. SIGTERM or Ctrl-C stops it gracefully.")
    p.add_argument("model", help="checkpoint file, export directory or 'default'")
    p.add_argument("--host", default="127.0.0.1",
                   help="address of all endpoints; 0.0.0.0 serves every interface "
                   "(default: 127.0.0.1)")
    add_bounded(p, "--http-port", "HTTP port (default: 8000)", default=8000)
    add_bounded(p, "--grpc-port", "gRPC port (default: 8001)", default=8001)
    add_bounded(p, "--metrics-port", "Prometheus metrics port (default: 8002)", default=8002)
    add_bounded(p, "--max-batch", "largest batch of Triton's dynamic batcher (default: 4)",
                default=4)
    add_bounded(p, "--batch-delay-us", "microseconds a request may wait to be batched "
                "(default: 0)", default=0)
    add_segment_args(p)
    p.set_defaults(func=cmd_serve)
    return p
