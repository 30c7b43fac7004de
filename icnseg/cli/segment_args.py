"""The segmentation flags shared by run, demo and serve, and loading a model from them."""

from __future__ import annotations

import argparse
import sys

from icnseg.cli.bounds import add_bounded
from icnseg.errors import ConfigError, IcnsegError
from icnseg.matching import SCORINGS
from icnseg.settings import RULES


def segment_overrides(args: argparse.Namespace) -> dict:
    """The run/demo flags that change the model's recorded segment settings."""
    match = {k: getattr(args, k) for k in ("scoring", "nms_iou") if getattr(args, k) is not None}
    kw = {
        k: getattr(args, k)
        for k in ("iterations", "threshold", "rule", "match_max_side")
        if getattr(args, k) is not None
    }
    return {**kw, **({"match": match} if match else {})}


def load_for_cli(model_name: str, args: argparse.Namespace):
    """(Segmenter, its segment config) through the one loader; prints the auto choice."""
    from icnseg.loader import auto_backend, device_for, load

    if args.backend in (None, "auto"):
        args.backend, why = auto_backend(model_name)
        print(f"backend: {args.backend} ({why})", file=sys.stderr)
    args.device = device_for(args.backend, args.device, args.provider)
    model = load(model_name, backend=args.backend, device=args.device)
    from icnseg.cli.settings_file import config_with_file

    return model, config_with_file(model.segment_config, getattr(args, "config", None),
                                   segment_overrides(args))


def prefetch_depth(depth: int | None, device: str) -> int:
    """--prefetch, or by default 3 on a GPU (the host is idle during device work) and 0 on
    the CPU (the networks use every core; measured by benchmarks/stream_overlap.py)."""
    from icnseg.cli.run import PREFETCH_DEPTH

    if depth is None:
        return PREFETCH_DEPTH if device != "cpu" else 0
    if depth < 0:
        raise ConfigError(f"--prefetch must be >= 0, got {depth}")
    return depth


def embedded_settings():
    """The embedded model's recorded segment settings (its shipped export's manifest), shown
    in --help as the default a model without its own would take."""
    import json

    from icnseg.loader import DEFAULT_EXPORT
    from icnseg.settings import SegmentConfig, config_from_dict

    try:
        manifest = json.loads((DEFAULT_EXPORT / "manifest.json").read_text(encoding="utf-8"))
        return config_from_dict({"segment": manifest["segment"]})
    except (OSError, ValueError, KeyError, IcnsegError):
        return SegmentConfig()


def add_segment_args(p: argparse.ArgumentParser) -> None:
    from icnseg.loader import BACKENDS, PROVIDERS, USER_DEVICES

    emb = embedded_settings()

    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *BACKENDS),
        help="inference backend; auto: torch for a checkpoint, onnxruntime for an export "
        "directory (tensorrt when engines were built into it), for 'default' torch if "
        "installed, else the shipped export on onnxruntime (default: auto)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=USER_DEVICES,
        help="where the networks run: cpu or cuda (default: cuda for --backend tensorrt, "
        "else cpu)",
    )
    p.add_argument(
        "--provider",
        default=None,
        choices=PROVIDERS,
        help="ONNX Runtime's execution provider on the GPU: cuda, or tensorrt (its TensorRT "
        "provider; --backend tensorrt runs icnseg's own engines instead) (default: cuda)",
    )
    p.add_argument(
        "--proposals",
        default="builtin",
        help="'builtin' or a folder with <stem>.mat/.json/<stem>/ per image (default: builtin)",
    )
    add_bounded(p, "--iterations", "T, ICN passes; 0 = naive PRM (default: the model's own, "
                f"{emb.iterations} for the embedded model)", default=None)
    add_bounded(p, "--match-max-side", "match at the image's size, its long side capped at PX "
                f"(default: the model's own, {emb.match_max_side} for the embedded model)",
                default=None, metavar="PX")
    add_bounded(p, "--threshold", "binarisation threshold of the enhanced map (default: the "
                f"model's own, {emb.threshold} for the embedded model)", default=None)
    p.add_argument(
        "--rule", choices=RULES, default=None,
        help=f"PRM backprop rule (default: the model's own, {emb.rule} for the embedded model)"
    )
    p.add_argument(
        "--scoring",
        choices=SCORINGS,
        default=None,
        help="proposal matching (Eq. 5) variant (default: the model's own, "
        f"{emb.match.scoring} for the embedded model)",
    )
    add_bounded(p, "--nms-iou", "mask NMS IoU (default: the model's own, "
                f"{emb.match.nms_iou} for the embedded model)", default=None)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="segmentation settings (iterations, threshold, peaks, match: alpha, "
                   "beta, gamma, nms_iou, ...) from a YAML or JSON file, or an earlier run's "
                   "OUT/run.json; flags win over it")
    p.add_argument("--prm-panel", action="store_true", help="add a PRM heat-map panel")
    p.add_argument("--force", action="store_true",
                   help="write into an --out that holds files icnseg did not write (they are "
                        "kept; an input folder is always refused)")
    p.add_argument("--resume", action="store_true",
                   help="keep the whole image results of an earlier run into --out and "
                        "segment only the rest (videos are redone)")
