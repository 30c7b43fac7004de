"""`icnseg ...`: a thin argparse front end; every command calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from icnseg import __version__
from icnseg.classes import SYNTH_OBJECTS, SYNTH_STYLES
from icnseg.cli.bounds import SYNTH_SIZE, add_bounded
from icnseg.cli.flags import add_config_args, config_from_args
from icnseg.cli.segment_args import add_segment_args, load_for_cli, prefetch_depth
from icnseg.cli.util import human_bytes
from icnseg.errors import ConfigError, IcnsegError
from icnseg.settings import RULES


def _cmd_synth(args: argparse.Namespace) -> int:
    from icnseg.data.synth import generate
    from icnseg.outdir import check_free_space, check_out_flag, check_replaceable_dir

    out = check_out_flag(args.out)
    check_replaceable_dir(out, args.force, "classes.txt", "a dataset `icnseg data synth` wrote")
    # JPEG + two PNG label maps + XML: ~1 byte per pixel measured at 256 px, doubled
    check_free_space(out, 2 * args.n * args.size * args.size, f"--n {args.n} --size {args.size}")
    out = generate(
        args.out,
        args.n,
        seed=args.seed,
        size=args.size,
        force=args.force,
        val_fraction=args.val_fraction,
        style=args.style,
        objects=args.objects,
    )
    print(f"wrote {args.n} images in VOC layout to {out}")
    return 0


def _cmd_stage1(args: argparse.Namespace) -> int:
    from icnseg.train.stage1 import Stage1Config, train_stage1

    train_stage1(config_from_args(Stage1Config, args, data=args.data, out=args.out))
    return 0


def _cmd_stage2(args: argparse.Namespace) -> int:
    from icnseg.train.stage2 import Stage2Config, train_stage2

    labels = args.labels or ["proposals"]
    if len(labels) > 2 or (labels[0] == "saliency") != (len(labels) == 2):
        raise ConfigError("--labels takes 'proposals' or 'saliency DIR'")
    args.labels = None
    cfg = config_from_args(
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


def _run(model_name: str, inputs, out: str, args: argparse.Namespace) -> int:
    from icnseg.cli.sources import expand_inputs, make_sources
    from icnseg.outdir import OutputDir, check_free_space

    items = expand_inputs(inputs)
    sources = make_sources(items, getattr(args, "frames", None), getattr(args, "every", 1))
    folders = [Path(i) for i in inputs if Path(i).is_dir()]
    out_dir = OutputDir(out, [*folders, *items], force=args.force,
                        resume=args.resume)  # checked before any work
    with out_dir:
        check_free_space(out_dir.path, _expected_output_bytes(items), "the run")
        return _run_into(model_name, sources, out_dir, args)


def _expected_output_bytes(items) -> int:
    """A rough upper bound of what `run` writes: JSON + overlay PNG ~ 3x each input file."""
    return sum(3 * p.stat().st_size for p in items if isinstance(p, Path)) + (1 << 20)


def _run_into(model_name: str, sources, out_dir, args: argparse.Namespace) -> int:
    from icnseg.cli.run import FrameSegmenter, run_sources
    from icnseg.output.run_file import run_record

    out = str(out_dir.path)
    model, cfg = load_for_cli(model_name, args)
    segment_fn = FrameSegmenter(model, cfg, with_prm=args.prm_panel)
    run = run_record(model_name, args.backend, args.device, args.proposals, cfg)
    summary = run_sources(segment_fn, sources, out_dir, run,
                          proposals=args.proposals, log=lambda m: print(m, file=sys.stderr),
                          frame_png=getattr(args, "frame_png", False),
                          depth=prefetch_depth(getattr(args, "prefetch", None), args.device),
                          proposal_workers=getattr(args, "proposal_workers", 0))
    for video, codec in zip(summary.videos, summary.codecs, strict=True):
        note = "" if codec == "avc1" else ", H.264 (avc1) unavailable in this OpenCV build"
        print(f"annotated video: {video} ({codec}{note})")
    print(summary.line(out))
    return 1 if summary.failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from icnseg.cli.ray_run import check_ray_args, cmd_run_ray

    check_ray_args(args)
    if args.ray:
        return cmd_run_ray(args)
    return _run(args.model, args.inputs, args.out, args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from icnseg.loader import ASSETS

    samples = sorted((ASSETS / "samples").glob("*.jpg"))
    if not samples:
        raise ConfigError(f"{ASSETS / 'samples'}: the package ships no sample images")
    rc = _run("default", [str(p) for p in samples], args.out, args)
    print(f"overlays (PNG) and instances (JSON) are in {args.out}/")
    return rc


def _cmd_export(args: argparse.Namespace) -> int:
    from icnseg.data.images import check_memory
    from icnseg.export.exporter import checkpoint_to_onnx
    from icnseg.outdir import check_not_input, check_out_flag, check_replaceable_dir

    out = check_out_flag(args.out)
    if args.model != "default" and Path(args.model).exists():
        check_not_input(out, [Path(args.model)] + ([Path(args.model).parent]
                                                  if args.force else []))
    check_replaceable_dir(out, args.force, "manifest.json", "an icnseg export")
    if args.size:  # the PRM backward holds ~K_max x 8 float maps of H x W (tracing, autograd)
        h, w = args.size
        check_memory(h * w * args.peaks * 4 * 8, "--size/--peaks",
                     f"exporting at {h}x{w} with K_max {args.peaks}", "lower them")
    result = checkpoint_to_onnx(
        args.model,
        args.out,
        size=tuple(args.size) if args.size else None,
        peaks=args.peaks,
        rule=args.rule,
        opset=args.opset,
        dynamic_size=args.dynamic_size,
        unroll=args.unroll,
        force=args.force,
        dynamic_k=args.dynamic_k,
        precision=args.precision,
        calib=args.calib,
        calib_method=args.calib_method,
        int8_activations=args.int8_activations,
        check_fp32=args.check,
    )
    print(f"exported {args.model} -> {result.out_dir} in {result.seconds:.1f}s")
    for name, size in result.sizes.items():
        print(f"  {name:14s} {human_bytes(size):>10s}")
    if args.precision != "fp32":
        from icnseg.export.accuracy import format_accuracy

        print(format_accuracy(result.manifest))
    if not args.check:
        return 0
    from icnseg.export.parity import check_export, format_report

    report = result.parity or check_export(args.model, result.out_dir)
    print(format_report(report))
    return 0 if report["ok"] else 1


def _cmd_eval(args: argparse.Namespace) -> int:
    from icnseg.eval_files import (
        evaluate_dirs,
        format_table,
        is_metrics_file,
        metrics_name,
        write_metrics,
    )
    from icnseg.outdir import check_output_file, claim_in

    out = args.json or str(Path(args.pred_dir) / metrics_name(args.split))
    check_output_file(out, "--json", replaceable=is_metrics_file)  # before the work
    metrics = evaluate_dirs(args.pred_dir, args.gt, split=args.split)
    print(format_table(metrics))
    if metrics.get("predictions_outside_split"):
        print(f"note: {metrics['predictions_outside_split']} prediction(s) for images outside "
              f"the {args.split!r} split were not scored")
    if args.coco_json:
        from icnseg.coco import evaluate_coco

        metrics["coco_mask"] = evaluate_coco(args.pred_dir, args.gt, args.split, args.coco_json)
        print("COCO mask " + ", ".join(f"{k} {100 * v:.1f}" for k, v in
                                        metrics["coco_mask"].items())
              + f" (pycocotools; results file {args.coco_json})")
    claim_in(Path(out).parent, Path(out).name)  # an icnseg output folder logs it as its own
    write_metrics(out, metrics)
    print(f"metrics written to {out}")
    return 0


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
    add_bounded(p, "--n", "number of images", required=True)
    add_bounded(p, "--seed", "random seed (default: 0)", default=0)
    add_bounded(p, "--size", "image side in pixels (default: 256)", SYNTH_SIZE, default=256)
    add_bounded(p, "--val-fraction", "share in val (default: 0.2)", default=0.2)
    p.add_argument("--style", choices=SYNTH_STYLES, default="train",
                   help="look: train (what the shipped model trains on), salient (the "
                   "others set's look), unseen (for generalisation tests; default: train)")
    p.add_argument("--objects", choices=SYNTH_OBJECTS, default="targets",
                   help="targets (the five classes) or others (class-agnostic non-target "
                   "shapes, the saliency variant's training set; default: targets)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_cmd_synth)

    train = sub.add_parser("train", help="two-stage training").add_subparsers(
        dest="stage", required=True
    )
    p = train.add_parser("stage1", help="train the PRM classifier on image-level labels")
    p.add_argument("--data", required=True, help="VOC-layout dataset root")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors or .pt)")
    add_config_args(p, Stage1Config, skip=("data", "out"))
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
    add_config_args(p, Stage2Config, skip=("data", "out", "stage1", "labels", "saliency_dir"))
    p.set_defaults(func=_cmd_stage2)

    p = sub.add_parser("demo", help="run the embedded model on the bundled sample images")
    p.add_argument("--out", default="icnseg-demo", help="output folder (default: icnseg-demo)")
    add_segment_args(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("run", help="segment images, videos and cameras: <stem>.json + "
                       "<stem>.png per image; <stem>/NNNNNN.json + <stem>.mp4 per video")
    p.add_argument("model", help="checkpoint file, export directory or 'default'")
    p.add_argument("inputs", nargs="+", help="image or video files, folders, globs, "
                   "or camera indices (0, cam:0)")
    p.add_argument("--out", required=True, help="output folder")
    add_segment_args(p)
    add_bounded(p, "--frames", "segment at most N frames of each video / camera (default: all)",
                default=None, metavar="N")
    add_bounded(p, "--every", "segment every N-th frame of videos / cameras; the annotated video "
                "plays at the input's fps / N, at least 1 fps (default: 1)",
                default=1, metavar="N")
    add_bounded(p, "--prefetch", "frames decoded + prepared ahead in a thread, 0 = inline "
                "(default: 3 on a GPU, 0 on the CPU)", default=None, metavar="N")
    p.add_argument("--frame-png", action="store_true",
                   help="also write an overlay PNG per video frame")
    add_bounded(p, "--proposal-workers", "make built-in proposals in N worker processes ahead "
                "of the networks (default: 0, inline)", default=0, metavar="N")
    from icnseg.cli.ray_run import add_ray_args

    add_ray_args(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("export", help="checkpoint -> prm.onnx, icn.onnx, manifest.json")
    p.add_argument("model", help="checkpoint file or 'default'")
    p.add_argument("--out", required=True, help="export directory (must be empty or absent)")
    add_bounded(p, "--size", "input size, multiples of 16 (default: the model's)", nargs=2,
                metavar=("H", "W"), default=None)
    add_bounded(p, "--peaks", "K_max, peaks per image (default: 32)", default=32)
    p.add_argument("--rule", choices=RULES, default="prm",
                   help="backward rule of the PRM graph (default: prm)")
    add_bounded(p, "--opset", "ONNX opset (default: 17)", default=17)
    p.add_argument("--dynamic-size", action="store_true",
                   help="icn.onnx with dynamic H/W (prm.onnx stays at --size)")
    p.add_argument("--dynamic-k", action="store_true",
                   help="PRM backward over the image's peaks only, not K_max rows (faster on "
                        "ONNX Runtime; the TensorRT backend needs a static export)")
    add_bounded(p, "--unroll", "ICN passes chained in icn.onnx; must divide T (default: 1)",
                default=1)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="types in the graphs: fp16 (FP32 islands where FP16 is unsafe) or int8 "
                   "(Q/DQ, needs --calib); measured against FP32 on the calibration images, "
                   "refused above tolerance (default: fp32)")
    p.add_argument("--calib", metavar="IMAGES", default=None,
                   help="folder of calibration images for --precision int8 (fp16: optional, "
                   "default 16 synthetic shapes images)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"),
                   default="minmax", help="INT8 activation range calibration (default: minmax)")
    p.add_argument("--int8-activations", choices=("symmetric", "asymmetric"),
                   default="symmetric", help="symmetric INT8 (zero point 0; TensorRT's form, "
                   "runs everywhere) or asymmetric UINT8 (ONNX Runtime CPU's fast x86 form; "
                   "TensorRT refuses it) (default: symmetric)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare ONNX Runtime with PyTorch and fail above tolerance; for fp16/"
                   "int8 the export's FP32 graphs (default: on)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("eval", help="mAP^r@0.25/0.5/0.75, ABO and mIoU of predictions")
    p.add_argument("pred_dir", help="folder of <stem>.json written by `icnseg run`")
    p.add_argument("--gt", required=True, help="VOC-layout ground truth root")
    p.add_argument("--split", default="val", help="ImageSets/Segmentation split (default: val)")
    p.add_argument("--json", default=None, help="metrics file (default: PRED_DIR/metrics.json "
                   "for val, PRED_DIR/metrics-SPLIT.json for another split)")
    p.add_argument("--coco-json", default=None, metavar="FILE",
                   help="also write a COCO results file (bbox xywh, RLE segmentation) and "
                        "report COCO mask AP/AP50/AP75 from pycocotools")
    p.set_defaults(func=_cmd_eval)

    from icnseg.cli import bench as cli_bench
    from icnseg.cli import doctor as cli_doctor
    from icnseg.cli import engine as cli_engine
    from icnseg.cli import serve as cli_serve

    cli_engine.add_parser(sub)
    cli_serve.add_parser(sub)
    cli_bench.add_parser(sub)
    cli_doctor.add_parser(sub)
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
