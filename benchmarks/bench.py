"""``icnseg bench``: per-stage and end-to-end latency of several backends, side by side.

Every backend runs the same images. "e2e" counts what ``icnseg run`` pays: each timed image
makes its built-in proposals (at the image's size, as matching uses them); "e2e without
proposals" is the same time less that stage. The agreement check and the overlapped
throughput use the proposals made once per image (``load_inputs``).
Outputs are checked equal (``agree.check_agreement``) before any time is measured, and the
timed iterations go round-robin over the backends so that machine noise hits all of them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icnseg.benchmarks.agree import check_agreement
from icnseg.benchmarks.machine import machine_info, peak_rss_mb
from icnseg.benchmarks.runners import Runner
from icnseg.benchmarks.timing import StageTimer, summarize, timing_warnings
from icnseg.errors import ConfigError
from icnseg.loader import BACKENDS, ONNXRUNTIME, RUNTIME_BACKENDS, TORCH
from icnseg.segmenter import STAGES


@dataclass(frozen=True)
class BenchConfig:
    """What ``icnseg bench`` measures."""

    model: str = "default"  # checkpoint, export directory, or 'default'
    backends: tuple[str, ...] = (TORCH, ONNXRUNTIME)  # any of loader.BACKENDS
    device: str = "cpu"  # device of the runtime backends: cpu | cuda | tensorrt (ORT EP)
    baseline: bool = False  # add the original-PRM pipeline; report speed-ups over it
    iters: int = 20  # timed images per backend
    warmup: int = 3  # untimed images per backend before timing
    images: tuple[str, ...] = ()  # image files/folders; empty: the bundled sample images
    streams: int = 2  # concurrent streams for the overlapped-throughput figure (0: skip)
    cold: bool = True  # cold start and peak RSS, each backend in a fresh process
    micro: bool = True  # with the baseline: matcher at N=1000, K=8 and backward at K=8
    # export dirs for the runtime backends (default: MODEL's own); several (e.g. fp32 and
    # int8) run side by side as runners "onnxruntime[int8]", checked against the FP32 one
    export: tuple[str, ...] | str | None = None
    budget_frames: int = 10  # frames per video (96/224/448 px) of the per-frame budget (0: skip)
    # intra-op threads of every ONNX Runtime session and of PyTorch (None: each library's
    # default); a fixed count makes backends comparable on a shared machine
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.export, str):
            object.__setattr__(self, "export", (self.export,))
        if not self.backends and not self.baseline:
            raise ConfigError("nothing to benchmark: give --backend and/or --baseline")
        for b in self.backends:
            if b not in BACKENDS:
                raise ConfigError(f"unknown backend {b!r}; choose one of {', '.join(BACKENDS)}")
        if len(set(self.backends)) != len(self.backends):
            raise ConfigError(f"a backend is listed twice: {', '.join(self.backends)}")
        if self.iters < 1 or self.warmup < 0 or self.streams < 0 or self.budget_frames < 0:
            raise ConfigError("--iters must be >= 1, --warmup, --streams and --budget-frames "
                              ">= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


@dataclass
class Loaded:
    """The runners of one benchmark, their shared settings and inputs."""

    runners: dict[str, Any]
    cfg: Any
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    export_dir: Path | None
    checkpoint: str | None


def _is_export_dir(model: str) -> bool:
    """True when MODEL names an export directory."""
    return model != "default" and Path(model).is_dir()


def load_runners(cfg: BenchConfig, stack: contextlib.ExitStack) -> Loaded:
    """Load every requested pipeline on the same model (exporting a checkpoint if needed)."""
    from icnseg.loader import load

    needs_torch = cfg.baseline or TORCH in cfg.backends
    runtime = [b for b in cfg.backends if b in RUNTIME_BACKENDS]
    if needs_torch and _is_export_dir(cfg.model):
        raise ConfigError(f"{cfg.model}: an export directory cannot run the torch backend or "
                          "the baseline; give the checkpoint it was exported from")
    models: list[Any] = []
    eager = seg_cfg = export_dir = None
    if needs_torch:
        if cfg.threads is not None:
            import torch

            torch.set_num_threads(cfg.threads)
        eager = load(cfg.model, backend=TORCH)
        seg_cfg = eager.segment_config()
    export_dirs: list[Any] = []
    if runtime:
        if cfg.export or cfg.model == "default" or _is_export_dir(cfg.model):
            export_dirs = list(cfg.export or (cfg.model,))
        else:
            from icnseg.export.exporter import checkpoint_to_onnx

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="icnseg-bench-"))
            export_dirs = [checkpoint_to_onnx(eager or cfg.model, Path(tmp) / "export").out_dir]
    if TORCH in cfg.backends:
        models.append(eager)
    for name in runtime:
        for export_dir in export_dirs:
            exported = load(export_dir, backend=name, device=cfg.device,
                            threads=cfg.threads if name == ONNXRUNTIME else None)
            stack.callback(exported.close)
            models.append(exported)
    if cfg.baseline:
        from icnseg.benchmarks.baseline import BaselineModel  # torch: only when asked for

        models.append(BaselineModel(eager))
    seg_cfg = seg_cfg or models[0].segment_config()
    runners: dict[str, Any] = {}
    for model in models:
        model.check_config(seg_cfg)
        runner = Runner(model, seg_cfg)
        stack.callback(runner.close)
        if len(export_dirs) > 1 and hasattr(model, "path"):
            runner.name = export_runner_name(runner.name, model, runners)
        runners[runner.name] = runner
    first = models[0]
    export_path = getattr(next((m for m in models if hasattr(m, "path")), None), "path", None)
    checkpoint = None if _is_export_dir(cfg.model) else cfg.model
    return Loaded(runners, seg_cfg, tuple(first.classes), tuple(first.input_size), export_path,
                  checkpoint)


def export_runner_name(base: str, model: Any, taken: Mapping[str, Any]) -> str:
    """``onnxruntime[int8]`` (``onnxruntime[int8:DIRNAME]`` if that precision is taken)."""
    name = f"{base}[{model.precision}]"
    return name if name not in taken else f"{base}[{model.precision}:{model.path.name}]"


def agreement_tolerances(runners: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(the FP32 runtime runner to compare against, {runner: tolerance of its precision})."""
    from icnseg.compare import TOLERANCES

    precision = {n: getattr(r.model, "precision", "fp32") for n, r in runners.items()}
    fp32 = next((n for n, p in precision.items() if p == "fp32"), None)
    return fp32, {n: TOLERANCES[p] for n, p in precision.items()}


def load_inputs(paths: Sequence[str], max_side: int | None) -> list[dict[str, Any]]:
    """Images and their built-in proposals at the matching size (made once, timed), at least
    one image."""
    from icnseg.cli.sources import expand_images
    from icnseg.data.voc import read_image
    from icnseg.loader import ASSETS
    from icnseg.postprocess import proposals_for

    files = expand_images(paths) if paths else sorted((ASSETS / "samples").glob("*.jpg"))
    if not files:
        raise ConfigError("no input images (give --images)")
    inputs = []
    for f in files:
        image = read_image(f)
        t0 = time.perf_counter()
        proposals = proposals_for(image, None, max_side)
        inputs.append({"name": f.name, "path": str(f), "image": image, "proposals": proposals,
                       "proposal_s": time.perf_counter() - t0})
    return inputs


def device_sync(device: str) -> Callable[[], None] | None:
    """A wait for all queued GPU work (so each stage is charged its own kernels), or None."""
    if device == "cpu":
        return None
    from icnseg.errors import IcnsegError
    from icnseg.runtime.cuda import cuda_driver

    try:
        return cuda_driver().Context.synchronize
    except IcnsegError:  # no pycuda: ONNX Runtime's runs return when their work is done
        return None


def _timed_loop(loaded: Loaded, inputs: list[dict[str, Any]], warmup: int, iters: int,
                sync: Callable[[], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """Round-robin over runners; per runner {stage, 'e2e' or 'e2e_no_proposals': [seconds
    per timed image]}; every image makes its built-in proposals (the "proposals" stage)."""
    from tqdm import tqdm

    out: dict[str, dict[str, list[float]]] = {n: {} for n in loaded.runners}
    # a progress bar on a terminal only (disable=None); it is outside every timed span
    for it in tqdm(range(warmup + iters), desc="bench", unit="image", disable=None,
                   leave=False):
        item = inputs[it % len(inputs)]
        for name, runner in loaded.runners.items():
            timer = StageTimer(sync)
            t0 = time.perf_counter()
            runner.segment(item["image"], None, timer)
            wall = time.perf_counter() - t0
            if it < warmup:
                continue
            rec = out[name]
            e2e = timer.total() if runner.derived else wall
            rec.setdefault("e2e", []).append(e2e)
            rec.setdefault("e2e_no_proposals", []).append(
                e2e - timer.seconds.get("proposals", 0.0))
            for stage in STAGES:
                rec.setdefault(stage, []).append(timer.seconds.get(stage, 0.0))
    return out


def overlapped_throughput(runner: Any, inputs: list[dict[str, Any]], streams: int,
                          images: int) -> float:
    """Images/s with ``streams`` threads sharing the loaded pipeline."""
    def one(i: int) -> None:
        item = inputs[i % len(inputs)]
        runner.segment(item["image"], item["proposals"])

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(one, range(streams)))  # warm every thread
        t0 = time.perf_counter()
        list(pool.map(one, range(images)))
        return images / (time.perf_counter() - t0)


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure; BenchmarkError (before any timing) when the backends disagree."""
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        loaded = load_runners(cfg, stack)
        log(f"loaded {', '.join(loaded.runners)} in {time.perf_counter() - t0:.1f}s")
        inputs = load_inputs(cfg.images, loaded.cfg.match_max_side)
        names = [i["name"] for i in inputs]
        first = {n: [r.segment(i["image"], i["proposals"]) for i in inputs]
                 for n, r in loaded.runners.items()}
        fp32, tolerances = agreement_tolerances(loaded.runners)
        reference = TORCH if TORCH in first else fp32 or next(iter(first))
        check_agreement(reference, first, names, tolerances)
        log(f"outputs agree with {reference} on {len(inputs)} image(s); timing "
            f"{cfg.warmup} + {cfg.iters} image(s) per backend")
        samples = _timed_loop(loaded, inputs, cfg.warmup, cfg.iters, device_sync(cfg.device))
        result = _report(cfg, loaded, inputs, samples)
        for name, runner in loaded.runners.items():
            if hasattr(runner.model, "path") and importlib.util.find_spec("onnx"):
                ks = [len(first[name][i % len(inputs)][1].peaks) for i in range(cfg.iters)]
                result["backends"][name]["roofline"] = stage_roofline(
                    runner.model.path, ks, result["backends"][name]["stages_ms"], cfg.device)
        instances = {n: sum(len(r[0]) for r in v) for n, v in first.items()}
        result["agreement"] = {"reference": reference, "images": names, "instances": instances}
        if cfg.streams:
            for name, runner in loaded.runners.items():
                n = max(cfg.iters, 2 * cfg.streams)
                result["backends"][name]["throughput_overlapped"] = overlapped_throughput(
                    runner, inputs, cfg.streams, n)
        if cfg.micro and cfg.baseline and loaded.checkpoint is not None:
            from icnseg.benchmarks.micro import micro_benchmarks

            log("micro-benchmarks: matcher at N=1000, K=8; PRM backward at K=8")
            result["micro"] = micro_benchmarks(loaded.runners["baseline"].model.model, loaded.cfg)
        if cfg.budget_frames:
            from icnseg.benchmarks.frame_budget import frame_budget

            name = next(n for n in loaded.runners if n != "baseline") if len(
                loaded.runners) > 1 else next(iter(loaded.runners))
            log(f"per-frame budget: {name}, {cfg.budget_frames} frames per video")
            result["frame_budget"] = frame_budget(loaded.runners[name].model, loaded.cfg,
                                                  cfg.budget_frames)
        result["peak_rss_mb_all_backends"] = peak_rss_mb()
        cold_targets = {  # name -> (backend, what that backend loads)
            n: (r.model.backend, str(r.model.path) if cfg.export and
                r.model.backend in RUNTIME_BACKENDS else cfg.model)
            for n, r in loaded.runners.items()}
    if cfg.cold:
        from icnseg.benchmarks.cold_start import measure_cold

        for name, (backend, model) in cold_targets.items():
            log(f"cold start: {name} (fresh process)")
            result["backends"][name]["cold"] = measure_cold(model, backend, cfg.device,
                                                            inputs[0]["path"])
    return result


def stage_roofline(export_dir: Path, ks: Sequence[int], stages_ms: dict[str, Any],
                   device: str) -> list[dict[str, Any]]:
    """FLOPs/bytes of prm.onnx (its backward at K_max, or at each image's K for a --dynamic-k
    export) and icn.onnx (at each image's K) per second of the measured stages; fractions of
    peak on a GPU of ``roofline.GPUS``."""
    import onnx

    from icnseg.benchmarks.machine import gpus
    from icnseg.benchmarks.roofline import StageCost, combine, roofline, stage_costs
    from icnseg.benchmarks.static_k import is_dynamic_k

    prm_graph = onnx.load(str(export_dir / "prm.onnx"))
    stages = ("prm_forward", "peaks", "prm_backward")
    if is_dynamic_k(prm_graph):  # the backward runs each image's K rows: average over images
        per_k = {k: combine(stage_costs(prm_graph, {"K": k}), *stages) for k in set(ks)}
        prm = _mean_cost([per_k[k] for k in ks])
    else:
        prm = combine(stage_costs(prm_graph), *stages)
    costs = {"prm": prm}
    prm_ms = sum(stages_ms[s]["mean"] for s in ("prm_forward", "prm_backward", "prm")
                 if s in stages_ms)
    seconds = {"prm": prm_ms / 1e3}
    icn_k = [k for k in ks if k]
    if icn_k and "icn" in stages_ms:
        per_k = {k: stage_costs(export_dir / "icn.onnx", {"K": k})["icn"] for k in set(icn_k)}
        none = StageCost(0, 0, 0.0, 0)  # an image without peaks runs no ICN
        costs["icn"] = _mean_cost([per_k[k] if k else none for k in ks])
        seconds["icn"] = stages_ms["icn"]["mean"] / 1e3
    gpu = gpus()[0]["name"] if device != "cpu" and gpus() else None
    return [asdict(p) for p in roofline(costs, seconds, gpu)]


def _mean_cost(costs: Sequence[Any]) -> Any:
    """The per-image mean of several StageCosts."""
    from icnseg.benchmarks.roofline import StageCost

    flops = sum(c.flops for c in costs) / len(costs)
    nbytes = sum(c.bytes for c in costs) / len(costs)
    return StageCost(int(flops), int(nbytes), flops / nbytes if nbytes else 0.0, 0)


def _manifest_flag(export_dir: Path | None, key: str) -> bool | None:
    """A boolean fact of the export's manifest (None without an export)."""
    if export_dir is None:
        return None
    from icnseg.artifacts.manifest import read_manifest

    return bool(read_manifest(export_dir).get(key, False))


def _report(cfg: BenchConfig, loaded: Loaded, inputs: list[dict[str, Any]],
            samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The JSON result: settings, machine, per-backend statistics and speed-ups."""
    backends: dict[str, Any] = {}
    for name, rec in samples.items():
        e2e = summarize(rec["e2e"])
        backends[name] = {
            "e2e_ms": e2e,
            "e2e_no_proposals_ms": summarize(rec["e2e_no_proposals"]),
            "stages_ms": {s: summarize(rec[s]) for s in STAGES if any(rec[s])},
            "derived_stages": list(loaded.runners[name].derived),
            "throughput_single": 1e3 / e2e["mean"],
            "precision": getattr(loaded.runners[name].model, "precision", "fp32"),
        }
    base = backends.get("baseline")
    if base:
        for rec in backends.values():
            rec["speedup_vs_baseline"] = base["e2e_ms"]["mean"] / rec["e2e_ms"]["mean"]
            rec["speedup_vs_baseline_no_proposals"] = (
                base["e2e_no_proposals_ms"]["mean"] / rec["e2e_no_proposals_ms"]["mean"])
            rec["stage_speedup_vs_baseline"] = {
                s: base["stages_ms"][s]["mean"] / v["mean"]
                for s, v in rec["stages_ms"].items()
                if s in base["stages_ms"] and v["mean"] > 0
            }
    seg = loaded.cfg
    machine = machine_info()
    return {
        "warnings": timing_warnings(cfg.iters, machine["loadavg"], machine["cores"]),
        "config": {**asdict(cfg), "segment": seg.to_dict(), "input_size": list(loaded.input_size),
                   "dynamic_k": _manifest_flag(loaded.export_dir, "dynamic_k"),
                   "export_dir": str(loaded.export_dir) if loaded.export_dir else None,
                   "precision": "/".join(dict.fromkeys(r["precision"]
                                                       for r in backends.values()))},
        "machine": machine,
        "proposals_ms": summarize([i["proposal_s"] for i in inputs]),
        "proposal_counts": [len(i["proposals"]) for i in inputs],
        "backends": backends,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
