"""ONNX -> TensorRT engine files (``icnseg build-engine``): strongly typed networks, profiles, DLA.

``onnx_to_engine`` is file-in/file-out with the TensorRT Python API (``tensorrt`` >= 10, or
``tensorrt_rtx``, imported inside). Every network is strongly typed: the engine runs each
tensor in the type the ONNX graph gives it (FP32, FP16 casts, INT8 Q/DQ from ``icnseg export
--precision``), so there are no builder precision flags, no layer pinning and no implicit
calibrator (TensorRT 11 and TensorRT-RTX have none; 10.x gets ``STRONGLY_TYPED`` set).
``build_engines`` builds ``prm.onnx`` and ``icn.onnx`` of an export directory through the
engine cache (``icnseg.artifacts.engine_cache``): a second build with the same ONNX,
TensorRT, GPU and settings reuses the engine at once.

Optimisation profiles: a dynamic K (axis 0 of icn.onnx's ``prm``) gets min 1, opt
``min(K_max, 8)`` (a typical peak count: TensorRT tunes its kernels for opt), max K_max;
dynamic H/W (``--dynamic-size`` exports) get the manifest input size unless ``size_range``
widens them. Static graphs (prm.onnx) need no profile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icnseg.artifacts.engine_cache import (
    BuildResult,
    EngineSpec,
    TrtEnv,
    build_cached,
    prune_other_sources,
    timing_cache_path,
)
from icnseg.artifacts.manifest import export_precision, read_manifest, verify_files
from icnseg.artifacts.profiles import Profiles, graph_input_shapes, profile_shapes
from icnseg.artifacts.trt_env import check_flavour_gpu
from icnseg.errors import ConfigError, ExportError
from icnseg.fileio import atomic_path, write_bytes


def check_flavour(flavour: str, spec: EngineSpec) -> None:
    """ConfigError for settings this TensorRT flavour cannot build."""
    if flavour == "tensorrt_rtx" and spec.dla_core is not None:
        raise ConfigError("--dla: TensorRT-RTX has no DLA support; install 'icnseg[tensorrt]' "
                          "(on Jetson: JetPack's TensorRT)")


def network_flags(trt: Any, flavour: str) -> int:
    """Creation flags of a strongly typed network: STRONGLY_TYPED on TensorRT 10, none where
    strong typing is the only mode (TensorRT 11, TensorRT-RTX)."""
    major = str(getattr(trt, "__version__", "0")).split(".")[0]
    if flavour == "tensorrt" and major == "10":
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _network(trt: Any, flavour: str, logger: Any, onnx_path: Path) -> tuple[Any, Any, Any]:
    """(builder, network, parser) for ``onnx_path``; ExportError with the parser's errors."""
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, flavour))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it: "
                          f"{'; '.join(errors) or logger.last_error or 'unknown error'}")
    return builder, network, parser


def _add_profiles(builder: Any, config: Any, profiles: Profiles) -> None:
    """One optimisation profile for the dynamic inputs (none for a static graph)."""
    if not profiles:
        return
    profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in profiles.items():
        profile.set_shape(name, mn, opt, mx)
    config.add_optimization_profile(profile)


def _set_dla(trt: Any, builder: Any, config: Any, dla_core: int) -> None:
    """Run on DLA core ``dla_core`` with GPU fallback; ConfigError where there is none."""
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if dla_core >= cores:
        raise ConfigError(f"--dla {dla_core}: this device has {cores} DLA core(s) "
                          "(DLA exists on Jetson AGX/NX boards)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


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
                   manifest: Mapping[str, Any], workspace_mb: int | None = None,
                   dla_core: int | None = None, timing_cache: Path | None = None,
                   k_opt: int | None = None,
                   size_range: tuple[Sequence[int], Sequence[int]] | None = None) -> Path:
    """Build a strongly typed TensorRT engine for ``onnx_path`` and write it (atomically)."""
    from icnseg.artifacts.trt_env import import_tensorrt, make_logger
    from icnseg.runtime.cuda import check_cuda

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    trt, flavour = import_tensorrt()
    check_flavour(flavour, EngineSpec(dla_core=dla_core))
    logger = make_logger(trt)
    with check_cuda(f"building a TensorRT engine for {onnx_path}"):
        builder, network, _parser = _network(trt, flavour, logger, onnx_path)
        inputs = {network.get_input(i).name: tuple(network.get_input(i).shape)
                  for i in range(network.num_inputs)}
        profiles = profile_shapes(inputs, int(manifest["k_max"]), manifest["input_size"],
                                  k_opt, size_range)
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        _add_profiles(builder, config, profiles)
        if dla_core is not None:
            _set_dla(trt, builder, config, dla_core)
        cache = _timing_cache(config, timing_cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"{onnx_path}: TensorRT could not build an engine "
                              f"({logger.last_error or 'see TensorRT log'})")
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(bytes(memoryview(serialized)))
        if timing_cache is not None:
            write_bytes(timing_cache, bytes(memoryview(cache.serialize())))
    return engine_path


def build_engines(export_dir: str | os.PathLike, *, dla_core: int | None = None,
                  workspace_mb: int | None = None, timing_cache: str | os.PathLike | None = None,
                  force: bool = False, env: TrtEnv | None = None,
                  log: Callable[[str], None] | None = None,
                  size_range: tuple[Sequence[int], Sequence[int]] | None = None,
                  build_fn=onnx_to_engine) -> list[BuildResult]:
    """Engines for every graph of ``export_dir`` through the engine cache (reused when valid).

    The precision is the export's (``icnseg export --precision``), recorded in the cache key.
    Checks run cheapest first: options, manifest + ONNX hashes, then TensorRT and the GPU.
    ``size_range`` ((Hmin, Wmin), (Hmax, Wmax)) sets the H/W profile of a ``--dynamic-size``
    icn.onnx. ``env`` / ``build_fn`` exist for tests of the cache logic.
    """
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    precision = export_precision(manifest, export_dir)
    calib = (manifest.get("calibration") or {}).get("sha256")
    EngineSpec(precision=precision, dla_core=dla_core, workspace_mb=workspace_mb,
               calib_sha256=calib).check()
    if (manifest.get("quantization") or {}).get("activations") == "asymmetric":
        raise ConfigError(f"{export_dir / 'manifest.json'}: INT8 activations are asymmetric "
                          "UINT8 (ONNX Runtime's CPU form), which TensorRT does not take: "
                          "export again with --int8-activations symmetric")
    files = verify_files(export_dir, manifest)
    if manifest.get("dynamic_k"):
        raise ConfigError(f"{export_dir}: exported with --dynamic-k (a data-dependent K in "
                          "prm.onnx); TensorRT engines need a static export: run icnseg export "
                          "again without --dynamic-k")
    if size_range is not None and not manifest.get("dynamic_size"):
        raise ConfigError(f"{export_dir}: exported at a fixed size {manifest['input_size']}; "
                          "--sizes needs an export made with --dynamic-size")
    if env is None:
        from icnseg.artifacts.trt_env import current_env

        env = current_env()
    check_flavour(env.flavour, EngineSpec(dla_core=dla_core))
    check_flavour_gpu(env)
    timing = Path(timing_cache) if timing_cache else timing_cache_path(export_dir, env)
    results = []
    for role, onnx_path in sorted(files.items(), key=lambda kv: kv[0] != "prm"):
        profiles = profile_shapes(graph_input_shapes(manifest, role), int(manifest["k_max"]),
                                  manifest["input_size"], size_range=size_range)
        spec = EngineSpec(precision=precision, dla_core=dla_core, workspace_mb=workspace_mb,
                          profiles=profiles, calib_sha256=calib)

        def build(src: Path, dst: Path, _calib_cache: Path) -> None:
            if log is not None:
                log(f"building {src.name} ({precision}, strongly typed) with "
                    f"{env.describe()} ...")
            build_fn(src, dst, manifest=manifest, workspace_mb=workspace_mb, dla_core=dla_core,
                     timing_cache=timing, size_range=size_range)

        sha = manifest["files"][role]["sha256"]
        results.append(build_cached(export_dir, role, onnx_path, sha, env, spec, build, force))
        prune_other_sources(export_dir, role, sha)
    return results
