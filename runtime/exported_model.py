"""ExportedModel: the Segmenter of an export directory on ONNX Runtime or TensorRT.

prepare (numpy/OpenCV) -> prm.onnx (forward, peaks, batched backward) -> icn.onnx x T (or
T/unroll calls of an unrolled graph) -> the numpy selection every backend shares. Never
imports torch. On a GPU (onnxruntime cuda/tensorrt, or the tensorrt backend) the graphs chain
through ``run_device``: the naive PRMs and every ICN pass stay on the device, and ``select``
matches the final maps there with the CUDA kernels (``runtime.gpu_matcher``; pycuda needed,
else the numpy matcher on host copies).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from icnseg.artifacts.manifest import export_precision, read_manifest, verify_files
from icnseg.base_segmenter import SegmenterBase
from icnseg.errors import ConfigError
from icnseg.instance import Instance
from icnseg.loader import ONNXRUNTIME, TENSORRT, check_device
from icnseg.postprocess import rescale_instances
from icnseg.runtime.backend import Backend, load_backend
from icnseg.segmenter import Clock, Prepared, Stages, no_clock
from icnseg.settings import SegmentConfig, config_from_dict


def _check_loaded_graph(path: Path, manifest: dict, role: str, backend: Backend) -> None:
    """The graph's shapes and embedded facts against the manifest (ONNX Runtime sessions)."""
    from icnseg.artifacts.manifest_schema import check_graph

    session = getattr(backend, "session", None)
    if session is None:  # TensorRT engines: their sidecar ties them to the ONNX sha256
        return
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    embedded = session.get_modelmeta().custom_metadata_map.get("icnseg.manifest")
    check_graph(path, manifest, role, inputs, outputs, embedded)


class ExportedModel(SegmenterBase):
    """An export directory loaded for inference (``icnseg.load(EXPORT_DIR)``)."""

    def __init__(self, export_dir: str | os.PathLike, backend: str = ONNXRUNTIME,
                 device: str | None = None, precision: str | None = None,
                 threads: int | None = None) -> None:
        """Read and verify the manifest (sha256 of every ONNX file), then load the graphs.

        ``backend="tensorrt"`` loads the engines ``icnseg build-engine`` put in
        ``<export_dir>/engines`` for this GPU and TensorRT. The precision is the export's
        (its graphs are typed: ``icnseg export --precision``) and every backend runs it as
        written; ``precision`` may only name it again (ConfigError otherwise). ``threads``:
        intra-op threads of each ONNX Runtime session (None: ONNX Runtime's default).
        """
        self.path = Path(export_dir)
        self.device = check_device(backend, device)
        self.manifest = read_manifest(self.path)
        files = verify_files(self.path, self.manifest)
        m = self.manifest
        self.classes: tuple[str, ...] = tuple(m["classes"])
        self.input_size: tuple[int, int] = tuple(m["input_size"])
        self.mean, self.std = tuple(m["mean"]), tuple(m["std"])
        self.k_max, self.rule, self.unroll = int(m["k_max"]), m["rule"], int(m["unroll"])
        self.backend, self.source = backend, str(self.path)
        self.precision = export_precision(m, self.path)
        if precision not in (None, self.precision):
            raise ConfigError(f"{self.path}: a {self.precision} export; precision {precision} "
                              "needs another export (icnseg export --precision "
                              f"{precision})")
        self.dynamic_k = bool(m.get("dynamic_k", False))
        if self.dynamic_k and TENSORRT in (backend, self.device):
            raise ConfigError(f"{self.path}: exported with --dynamic-k (the PRM graph's K is "
                              "data-dependent), which TensorRT engines here do not support; "
                              "export again without --dynamic-k")
        self.settings = {"segment": m["segment"]}
        # TensorRT: the engines built from these graphs (their precision); ONNX Runtime runs
        # the typed graphs as they are (no provider precision switch).
        graph_precision = self.precision if backend == TENSORRT else None
        if threads is not None and backend != ONNXRUNTIME:
            raise ConfigError(f"threads={threads}: only ONNX Runtime sessions take a thread "
                              f"count (backend {backend})")
        self.threads = threads
        self.prm: Backend = load_backend(backend, files["prm"], self.device,
                                         precision=graph_precision, threads=threads)
        try:
            self.icn: Backend | None = (
                load_backend(backend, files["icn"], self.device, precision=graph_precision,
                             threads=threads)
                if "icn" in files else None
            )
        except BaseException:
            self.prm.close()
            raise
        try:
            for role, b in (("prm", self.prm), ("icn", self.icn)):
                if b is not None:
                    _check_loaded_graph(files[role], self.manifest, role, b)
        except BaseException:
            self.close()
            raise
        # Chain the graphs on the device (no host round-trip between prm and icn) on a GPU;
        # on the CPU host arrays are as fast.
        self.on_device = self.device != "cpu"

    def check_config(self, cfg: SegmentConfig) -> None:
        """ConfigError if ``cfg`` asks for something the exported graphs cannot do."""
        exported = config_from_dict(self.settings)
        if cfg.rule != self.rule:
            raise ConfigError(f"{self.path}: exported with rule {self.rule!r}; --rule "
                              f"{cfg.rule!r} needs a new export (icnseg export --rule ...)")
        if cfg.peaks != exported.peaks:
            raise ConfigError(f"{self.path}: peak settings are baked into prm.onnx "
                              f"({exported.peaks}); re-export to change them")
        if cfg.iterations and self.icn is None:
            raise ConfigError(f"{self.path}: has no icn.onnx (stage-1 model); use --iterations 0")
        if cfg.iterations % self.unroll:
            raise ConfigError(f"{self.path}: icn.onnx unrolls {self.unroll} passes; "
                              f"--iterations {cfg.iterations} must be a multiple of it")

    def matches_on_device(self, cfg: SegmentConfig) -> bool:
        """True when ``select`` matches with the CUDA kernels (GPU, pycuda, supported cfg)."""
        from icnseg.runtime.gpu_matcher import device_matcher_available

        return self.on_device and device_matcher_available(cfg)

    def infer(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock = no_clock,
              keep_maps: bool = False) -> Stages:
        """Peaks, naive PRMs and (T > 0) enhanced maps; on a GPU with the device matcher the
        final maps stay there (``Stages.device_maps``) unless ``keep_maps``."""
        self.check_config(cfg)
        if self.on_device:
            return self._infer_device(prepared, cfg, clock, keep_maps)
        x = prepared.x
        with clock("prm"):
            out = self.prm.run({"image": x})
        n = int(out["count"][0])
        prm = np.ascontiguousarray(out["prm"][:n])
        stages = Stages(prepared.model_input, out["class_scores"][0], out["peaks"][:n], prm,
                        crm=out["crm"][0])
        if cfg.iterations > 0 and n:
            v = prm[:, None]
            with clock("icn"):
                for _ in range(cfg.iterations // self.unroll):
                    v = self.icn.run({"image": x, "prm": v}, ["map"])["map"]
            stages.enhanced = v[:, 0]
        return stages

    def _infer_device(self, prepared: Prepared, cfg: SegmentConfig, clock: Clock,
                      keep_maps: bool) -> Stages:
        """The naive PRMs feed the ICN in place, each ICN pass feeds the next; only the small
        outputs come back (and the final maps, unless the device matcher takes them)."""
        prm, icn, x = self.prm, self.icn, prepared.x.view()
        x.flags.writeable = False  # the same read-only image each pass: copied to an engine once
        with clock("prm"):
            out = prm.run_device({"image": x})
            n = int(prm.to_host(out["count"])[0])  # waits for the engine
        host = {k: prm.to_host(out[k]) for k in ("class_scores", "peaks", "crm")}
        naive = out["prm"].rows(n)
        stages = Stages(prepared.model_input, host["class_scores"][0], host["peaks"][:n],
                        prm.to_host(naive), crm=host["crm"][0])
        maps, owner = (naive if n else None), prm
        if cfg.iterations > 0 and n:
            v = naive.reshape(n, 1, *naive.shape[1:])
            with clock("icn"):
                for _ in range(cfg.iterations // self.unroll):
                    v = icn.run_device({"image": x, "prm": v}, ["map"])["map"]
                maps, owner = v.reshape(n, *v.shape[2:]), icn
        if maps is not None and self.matches_on_device(cfg):
            stages.device_maps = maps
        if cfg.iterations > 0 and n and (keep_maps or stages.device_maps is None):
            stages.enhanced = owner.to_host(maps)
        return stages

    def select(self, prepared: Prepared, stages: Stages, cfg: SegmentConfig,
               clock: Clock = no_clock) -> list[Instance]:
        """Matching + NMS: on the device maps with the CUDA kernels, else with numpy."""
        maps = stages.device_maps
        if (maps is not None and cfg.iterations == 0
                and self.proposals_of(prepared, cfg).shape != tuple(maps.shape[1:])):
            # raw PRMs are min-max scaled before upsampling, which the CUDA chain does not do:
            # the numpy matcher takes them (stages.prm is on the host already)
            stages.device_maps = maps = None
        if maps is None:
            return super().select(prepared, stages, cfg, clock)
        from icnseg.runtime.gpu_matcher import match_on_device

        stream = None
        if self.backend == TENSORRT:
            from icnseg.runtime.cuda import shared_stream

            stream = shared_stream()
        with clock("matcher"):  # binarise, Eq. 5, arg-max and NMS: one device chain
            instances = match_on_device(stages, stages.device_maps,
                                        self.proposals_of(prepared, cfg),
                                        self.classes, cfg, normalize=cfg.iterations == 0,
                                        stream=stream)
        with clock("postprocess"):
            return rescale_instances(instances, prepared.image.shape[:2])

    def graph_backends(self) -> tuple[Backend, ...]:
        """The loaded graphs (prm, then icn if any)."""
        return tuple(b for b in (self.prm, self.icn) if b is not None)

    def close(self) -> None:
        """Release the backends."""
        for b in self.graph_backends():
            b.close()
