"""`icnseg ...`: a thin argparse front end; every command calls one library function."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from icnseg import __version__
from icnseg.errors import ConfigError, IcnsegError


def _field_comments(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the comment written beside it in the source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found = (re.match(r"\s+(\w+):[^#]*#\s*(.*)", line) for line in lines)
    return {m.group(1): m.group(2) for m in found if m}


def _add_config_args(p: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Expose the fields of a frozen config dataclass as --flags (defaults stay in the class)."""
    hints = typing.get_type_hints(cls)
    notes = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        if base is bool:
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{notes.get(f.name, '')} (default: {f.default})",
            )
        else:
            p.add_argument(
                flag,
                type=base,
                default=None,
                help=f"{notes.get(f.name, '')} (default: {f.default})",
            )


def _config_from_args(cls: type, args: argparse.Namespace, **fixed):
    """Build ``cls`` from parsed flags; unset flags keep the dataclass defaults."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }
    values.update(fixed)
    return cls(**values)


def _cmd_synth(args: argparse.Namespace) -> int:
    from icnseg.data.synth import generate

    out = generate(
        args.out,
        args.n,
        seed=args.seed,
        size=args.size,
        force=args.force,
        val_fraction=args.val_fraction,
    )
    print(f"wrote {args.n} images in VOC layout to {out}")
    return 0


def _cmd_stage1(args: argparse.Namespace) -> int:
    from icnseg.train.stage1 import Stage1Config, train_stage1

    train_stage1(_config_from_args(Stage1Config, args, data=args.data, out=args.out))
    return 0


def _cmd_stage2(args: argparse.Namespace) -> int:
    from icnseg.train.stage2 import Stage2Config, train_stage2

    labels = args.labels or ["proposals"]
    if len(labels) > 2 or (labels[0] == "saliency") != (len(labels) == 2):
        raise ConfigError("--labels takes 'proposals' or 'saliency DIR'")
    args.labels = None
    cfg = _config_from_args(
        Stage2Config,
        args,
        data=args.data,
        out=args.out,
        stage1=args.stage1,
        labels=labels[0],
        saliency_dir=labels[1] if len(labels) == 2 else None,
    )
    train_stage2(cfg)
    return 0


def _segment_config(args: argparse.Namespace, model):
    """The pipeline config: the model's recorded settings, then the run/demo flags."""
    from icnseg.pipeline import config_for

    match = {k: getattr(args, k) for k in ("scoring", "nms_iou") if getattr(args, k) is not None}
    kw = {
        k: getattr(args, k)
        for k in ("iterations", "threshold", "rule")
        if getattr(args, k) is not None
    }
    return config_for(model, **kw, **({"match": match} if match else {}))


def _run(model_name: str, inputs, out: str, args: argparse.Namespace) -> int:
    from icnseg.model import load
    from icnseg.run import expand_inputs, run_images, torch_segmenter

    paths = expand_inputs(inputs)
    model = load(model_name)
    cfg = _segment_config(args, model)
    config = {
        "model": model.source,
        "backend": args.backend,
        "proposals": args.proposals,
        **cfg.to_dict(),
    }
    summary = run_images(
        torch_segmenter(model, cfg, with_prm=args.prm_panel),
        paths,
        out,
        model.classes,
        config,
        proposals=args.proposals,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(summary.line(out))
    return 1 if summary.failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(args.model, args.inputs, args.out, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from icnseg.model import ASSETS

    samples = sorted((ASSETS / "samples").glob("*.jpg"))
    if not samples:
        raise ConfigError(f"{ASSETS / 'samples'}: the package ships no sample images")
    rc = _run("default", [str(p) for p in samples], args.out, args)
    print(f"overlays (PNG) and instances (JSON) are in {args.out}/")
    return rc


def _cmd_eval(args: argparse.Namespace) -> int:
    from icnseg.eval_files import evaluate_dirs, format_table, write_metrics

    metrics = evaluate_dirs(args.pred_dir, args.gt, split=args.split)
    print(format_table(metrics))
    out = args.json or str(Path(args.pred_dir) / "metrics.json")
    write_metrics(out, metrics)
    print(f"metrics written to {out}")
    return 0


def _add_segment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend", default="torch", choices=("torch",), help="inference backend (default: torch)"
    )
    p.add_argument("--device", default="cpu", choices=("cpu",), help="(default: cpu)")
    p.add_argument(
        "--proposals",
        default="builtin",
        help="'builtin' or a folder with <stem>.mat/.json/<stem>/ per image",
    )
    p.add_argument(
        "--iterations", type=int, default=None, help="T, ICN passes (default: 3; 0 = naive PRM)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="binarisation threshold of the enhanced map (default: 0.5)",
    )
    p.add_argument(
        "--rule", choices=("prm", "gradient"), default=None, help="PRM backprop rule (default: prm)"
    )
    p.add_argument(
        "--scoring",
        choices=("icn", "paper", "prm"),
        default=None,
        help="proposal matching (Eq. 5) variant (default: icn)",
    )
    p.add_argument("--nms-iou", type=float, default=None, help="mask NMS IoU (default: 0.5)")
    p.add_argument("--prm-panel", action="store_true", help="add a PRM heat-map panel")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    from icnseg.train.stage1 import Stage1Config
    from icnseg.train.stage2 import Stage2Config

    parser = argparse.ArgumentParser(
        prog="icnseg",
        description="Weakly supervised instance segmentation (PRM + ICN): "
        "train, export, run, evaluate, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"icnseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write a synthetic shapes dataset in PASCAL VOC layout")
    p.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default: 256)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share in val (default: 0.2)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_cmd_synth)

    train = sub.add_parser("train", help="two-stage training").add_subparsers(
        dest="stage", required=True
    )
    p = train.add_parser("stage1", help="train the PRM classifier on image-level labels")
    p.add_argument("--data", required=True, help="VOC-layout dataset root")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors or .pt)")
    _add_config_args(p, Stage1Config, skip=("data", "out"))
    p.set_defaults(func=_cmd_stage1)
    p = train.add_parser("stage2", help="train the ICN on pseudo labels of a stage-1 model")
    p.add_argument("--data", required=True, help="VOC-layout dataset root")
    p.add_argument("--out", required=True, help="checkpoint to write (classifier + ICN)")
    p.add_argument("--stage1", required=True, help="stage-1 checkpoint")
    p.add_argument(
        "--labels",
        nargs="+",
        metavar=("SOURCE", "DIR"),
        default=None,
        help="'proposals' (default: pseudo labels from matched proposals) or "
        "'saliency DIR' (instance masks of a VOC-layout DIR as labels)",
    )
    _add_config_args(p, Stage2Config, skip=("data", "out", "stage1", "labels", "saliency_dir"))
    p.set_defaults(func=_cmd_stage2)

    p = sub.add_parser("demo", help="run the embedded model on the bundled sample images")
    p.add_argument("--out", default="icnseg-demo", help="output folder (default: icnseg-demo)")
    _add_segment_args(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("run", help="segment images: <stem>.json + <stem>.png per image")
    p.add_argument("model", help="checkpoint file, export directory or 'default'")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    _add_segment_args(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("eval", help="mAP^r@0.25/0.5/0.75, ABO and mIoU of predictions")
    p.add_argument("pred_dir", help="folder of <stem>.json written by `icnseg run`")
    p.add_argument("--gt", required=True, help="VOC-layout ground truth root")
    p.add_argument("--split", default="val", help="ImageSets/Segmentation split (default: val)")
    p.add_argument("--json", default=None, help="metrics file (default: PRED_DIR/metrics.json)")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None, err: Callable[[str], None] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    err = err or (lambda m: print(m, file=sys.stderr))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IcnsegError as exc:
        err(f"icnseg: error: {exc}")
        return 1
    except KeyboardInterrupt:
        err("icnseg: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
