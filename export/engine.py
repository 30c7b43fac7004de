"""ONNX -> TensorRT engine files (``icnseg build-engine``): profiles, precision, DLA, caches.

``onnx_to_engine`` is file-in/file-out with the TensorRT Python API (``tensorrt`` >= 10, or
``tensorrt_rtx``, imported inside). ``build_engines`` builds ``prm.onnx`` and ``icn.onnx`` of
an export directory through the engine cache (``icnseg.artifacts.engine_cache``): a second build
with the same ONNX, TensorRT, GPU and settings reuses the engine at once.

Optimisation profiles: a dynamic K (axis 0 of icn.onnx's ``prm``) gets min 1, opt
``min(K_max, 8)`` (a typical peak count: TensorRT tunes its kernels for opt), max K_max;
dynamic H/W (``--dynamic-size`` exports) get the manifest input size unless ``size_range``
widens them. Static graphs (prm.onnx) need no profile. INT8 turns on FP16 kernels too (layers
without INT8 kernels then run in FP16, not FP32) and calibrates at the opt shapes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icnseg.artifacts.engine_cache import (
    PRECISIONS,
    BuildResult,
    EngineSpec,
    TrtEnv,
    build_cached,
    prune_other_sources,
    timing_cache_path,
)
from icnseg.artifacts.manifest import read_manifest, verify_files
from icnseg.artifacts.profiles import Profiles, graph_input_shapes, profile_shapes
from icnseg.data.images import list_images
from icnseg.errors import ConfigError, ExportError, InputError
from icnseg.export.calibrator import (
    calibration_feeds,
    images_digest,
    make_calibrator,
)
from icnseg.fileio import atomic_path, write_bytes


def check_precision(flavour: str, spec: EngineSpec) -> None:
    """ConfigError for settings this TensorRT flavour cannot build."""
    if flavour == "tensorrt_rtx" and (spec.precision != "fp32" or spec.dla_core is not None):
        raise ConfigError("TensorRT-RTX builds strongly typed FP32 graphs here (no FP16/INT8 "
                          "flags, no DLA); install 'icnseg[tensorrt]' for --fp16/--int8/--dla")


def _network(trt: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any, Any]:
    """(builder, network, parser) for ``onnx_path``; ExportError with the parser's errors."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it: "
                          f"{'; '.join(errors) or logger.last_error or 'unknown error'}")
    return builder, network, parser


def _add_profiles(trt: Any, builder: Any, config: Any, profiles: Profiles, int8: bool) -> None:
    """One optimisation profile (+ a fixed opt-shape calibration profile for INT8)."""
    if not profiles:
        return
    profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in profiles.items():
        profile.set_shape(name, mn, opt, mx)
    config.add_optimization_profile(profile)
    if int8:
        calib = builder.create_optimization_profile()
        for name, (_, opt, _) in profiles.items():
            calib.set_shape(name, opt, opt, opt)
        config.set_calibration_profile(calib)


def _set_dla(trt: Any, builder: Any, config: Any, dla_core: int) -> None:
    """Run on DLA core ``dla_core`` with GPU fallback; ConfigError where there is none."""
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if dla_core >= cores:
        raise ConfigError(f"--dla {dla_core}: this device has {cores} DLA core(s) "
                          "(DLA exists on Jetson AGX/NX boards)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


# Layers of the prm rule's 1/|Z| chain (export/backward.py names them n/<op>.<suffix>): their
# values reach 1/1e-10, far past FP16's 65504, so reduced-precision builds keep them in FP32.
FP32_LAYER = re.compile(r"\.(absz|den|invz|zlow|gz|gback)(?:[._/:]|$)")


def fp32_layers(names: Sequence[str]) -> list[str]:
    """The layer names a FP16/INT8 build must keep in FP32 (the prm rule's 1/|Z| chain)."""
    return [n for n in names if FP32_LAYER.search(n)]


def _pin_fp32(trt: Any, network: Any, config: Any) -> int:
    """Constrain the 1/|Z| layers to FP32 (obeyed by the builder); returns how many."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    pinned = set(fp32_layers([layer.name for layer in layers]))
    for layer in layers:
        if layer.name in pinned:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
    if pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return len(pinned)


def _timing_cache(config: Any, path: Path | None) -> Any:
    """Create the builder's timing cache from ``path`` (an unreadable one starts empty)."""
    data = b""
    if path is not None and path.is_file():
        with contextlib.suppress(OSError):
            data = path.read_bytes()
    cache = None
    if data:
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # noqa: BLE001 - a damaged cache only costs build time
            cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


def onnx_to_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                   manifest: Mapping[str, Any], precision: str = "fp32",
                   workspace_mb: int | None = None, dla_core: int | None = None,
                   calib_images: Sequence[Path] | None = None, calib_cache: Path | None = None,
                   timing_cache: Path | None = None, k_opt: int | None = None,
                   size_range: tuple[Sequence[int], Sequence[int]] | None = None) -> Path:
    """Build a TensorRT engine for ``onnx_path`` and write it (atomically) to ``engine_path``."""
    from icnseg.artifacts.trt_env import import_tensorrt, make_logger
    from icnseg.runtime.cuda import check_cuda

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not calib_images:
        raise ConfigError("--int8 needs calibration images: add --calib DIR")
    trt, flavour = import_tensorrt()
    check_precision(flavour, EngineSpec(precision=precision, dla_core=dla_core))
    logger = make_logger(trt)
    calibrator = None
    with check_cuda(f"building a TensorRT engine for {onnx_path}"):
        builder, network, _parser = _network(trt, logger, onnx_path)
        inputs = {network.get_input(i).name: tuple(network.get_input(i).shape)
                  for i in range(network.num_inputs)}
        profiles = profile_shapes(inputs, int(manifest["k_max"]), manifest["input_size"],
                                  k_opt, size_range)
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        _add_profiles(trt, builder, config, profiles, precision == "int8")
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            _pin_fp32(trt, network, config)
        if precision == "int8":
            shapes = {n: (profiles[n][1] if n in profiles else s) for n, s in inputs.items()}
            k = shapes["prm"][0] if "prm" in shapes else 1
            prm_onnx = onnx_path.parent / "prm.onnx"
            calib_cache = calib_cache or engine_path.with_suffix(".calib")
            had_cache = calib_cache.is_file()
            calibrator = make_calibrator(
                trt, lambda: calibration_feeds(list(inputs), calib_images, manifest, prm_onnx, k),
                shapes, calib_cache)
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = calibrator
        if dla_core is not None:
            _set_dla(trt, builder, config, dla_core)
        cache = _timing_cache(config, timing_cache)
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if calibrator is not None and calibrator.error is not None:
            raise calibrator.error
        if calibrator is not None and calibrator.count == 0 and not had_cache:
            raise InputError(f"{onnx_path}: no calibration image gave it an input (icn.onnx "
                             "needs images where prm.onnx finds at least one peak)")
        if serialized is None:
            raise ExportError(f"{onnx_path}: TensorRT could not build an engine "
                              f"({logger.last_error or 'see TensorRT log'})")
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(bytes(memoryview(serialized)))
        if timing_cache is not None:
            write_bytes(timing_cache, bytes(memoryview(cache.serialize())))
    return engine_path


def build_engines(export_dir: str | os.PathLike, precision: str = "fp32", *,
                  calib: str | os.PathLike | None = None, dla_core: int | None = None,
                  workspace_mb: int | None = None, timing_cache: str | os.PathLike | None = None,
                  force: bool = False, env: TrtEnv | None = None,
                  log: Callable[[str], None] | None = None,
                  size_range: tuple[Sequence[int], Sequence[int]] | None = None,
                  build_fn=onnx_to_engine) -> list[BuildResult]:
    """Engines for every graph of ``export_dir`` through the engine cache (reused when valid).

    Checks run cheapest first: options, manifest + ONNX hashes, calibration folder, then
    TensorRT and the GPU. ``size_range`` ((Hmin, Wmin), (Hmax, Wmax)) sets the H/W profile of
    a ``--dynamic-size`` icn.onnx. ``env`` / ``build_fn`` exist for tests of the cache logic.
    """
    EngineSpec(precision=precision, dla_core=dla_core, workspace_mb=workspace_mb,
               calib_sha256="-" if calib else None).check()
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    files = verify_files(export_dir, manifest)
    if manifest.get("dynamic_k"):
        raise ConfigError(f"{export_dir}: exported with --dynamic-k (a data-dependent K in "
                          "prm.onnx); TensorRT engines need a static export: run icnseg export "
                          "again without --dynamic-k")
    if size_range is not None and not manifest.get("dynamic_size"):
        raise ConfigError(f"{export_dir}: exported at a fixed size {manifest['input_size']}; "
                          "--sizes needs an export made with --dynamic-size")
    images = list_images(calib) if precision == "int8" else None
    digest = images_digest(images) if images else None
    if env is None:
        from icnseg.artifacts.trt_env import current_env

        env = current_env()
    check_precision(env.flavour, EngineSpec(precision=precision, dla_core=dla_core))
    timing = Path(timing_cache) if timing_cache else timing_cache_path(export_dir, env)
    results = []
    for role, onnx_path in sorted(files.items(), key=lambda kv: kv[0] != "prm"):
        profiles = profile_shapes(graph_input_shapes(manifest, role), int(manifest["k_max"]),
                                  manifest["input_size"], size_range=size_range)
        spec = EngineSpec(precision=precision, dla_core=dla_core, workspace_mb=workspace_mb,
                          profiles=profiles, calib_sha256=digest)

        def build(src: Path, dst: Path, calib_cache: Path) -> None:
            if log is not None:
                log(f"building {src.name} ({precision}) with {env.describe()} ...")
            build_fn(src, dst, manifest=manifest, precision=precision,
                     workspace_mb=workspace_mb, dla_core=dla_core, calib_images=images,
                     calib_cache=calib_cache, timing_cache=timing, size_range=size_range)

        sha = manifest["files"][role]["sha256"]
        results.append(build_cached(export_dir, role, onnx_path, sha, env, spec, build, force))
        prune_other_sources(export_dir, role, sha)
    return results
