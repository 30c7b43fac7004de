"""ExportedModel: Algorithm 1 on an export directory with a non-torch backend.

resize + normalise (numpy/OpenCV) -> prm.onnx (forward, peaks, batched backward) -> icn.onnx
x T (or T/unroll calls of an unrolled graph) -> the same numpy post-processing as the torch
pipeline (``icnseg.postprocess``). Never imports torch. On a GPU (onnxruntime cuda/tensorrt,
or the tensorrt backend) the graphs chain through ``run_device``: the naive PRMs and every
ICN pass stay on the device, and ``segment`` matches the final maps there with the CUDA
kernels (``runtime.device_match``; pycuda needed, else the numpy matcher on host copies).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import ConfigError
from icnseg.export.manifest import read_manifest, verify_files
from icnseg.outputs import Instance
from icnseg.postprocess import (
    Clock,
    Stages,
    check_image,
    no_clock,
    prepare_input,
    proposals_for,
    rescale_instances,
    segment_stages,
)
from icnseg.proposals.types import Proposals
from icnseg.runtime.backend import Backend, load_backend
from icnseg.settings import SegmentConfig, config_from_dict


class ExportedModel:
    """An export directory loaded for inference (``icnseg.segment(model, image)``)."""

    def __init__(self, export_dir: str | os.PathLike, backend: str = "onnxruntime",
                 device: str = "cpu", precision: str | None = None) -> None:
        """Read and verify the manifest (sha256 of every ONNX file), then load the graphs.

        ``backend="tensorrt"`` loads the engines ``icnseg build-engine`` put in
        ``<export_dir>/engines`` for this GPU and TensorRT; ``precision`` (fp32 | fp16 | int8)
        picks among several builds, None takes the newest valid one per graph. For
        onnxruntime, ``precision="fp16"`` turns on FP16 in the TensorRT execution provider.
        """
        self.path = Path(export_dir)
        self.manifest = read_manifest(self.path)
        files = verify_files(self.path, self.manifest)
        m = self.manifest
        self.classes: tuple[str, ...] = tuple(m["classes"])
        self.input_size: tuple[int, int] = tuple(m["input_size"])
        self.mean, self.std = tuple(m["mean"]), tuple(m["std"])
        self.k_max, self.rule, self.unroll = int(m["k_max"]), m["rule"], int(m["unroll"])
        self.backend_name, self.device, self.source = backend, device, str(self.path)
        self.precision = precision
        self.dynamic_k = bool(m.get("dynamic_k", False))
        if self.dynamic_k and "tensorrt" in (backend, device):
            raise ConfigError(f"{self.path}: exported with --dynamic-k (the PRM graph's K is "
                              "data-dependent), which TensorRT engines here do not support; "
                              "export again without --dynamic-k")
        self.config = {"segment": m["segment"]}
        self.prm: Backend = load_backend(backend, files["prm"], device, precision=precision)
        try:
            self.icn: Backend | None = (
                load_backend(backend, files["icn"], device, precision=precision)
                if "icn" in files else None
            )
        except BaseException:
            self.prm.close()
            raise
        # Chain the graphs on the device (no host round-trip between prm and icn) when the
        # backend can and the device is a GPU; on the CPU host arrays are as fast.
        self.on_device = device != "cpu" and all(
            hasattr(b, "run_device") for b in (self.prm, self.icn) if b is not None)

    def segment_config(self, **overrides: Any) -> SegmentConfig:
        """The exported settings + overrides; graph-baked ones (rule, peaks) cannot change."""
        cfg = config_from_dict(self.config, **overrides)
        self.check_config(cfg)
        return cfg

    def check_config(self, cfg: SegmentConfig) -> None:
        """ConfigError if ``cfg`` asks for something the exported graphs cannot do."""
        exported = config_from_dict(self.config)
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

    def run_stages(self, image: np.ndarray, cfg: SegmentConfig,
                   clock: Clock = no_clock) -> Stages:
        """Peaks, naive PRMs and (T > 0) enhanced maps of one RGB uint8 image."""
        with clock("preprocess"):
            resized, x = prepare_input(image, self.input_size, self.mean, self.std)
        if self.on_device:
            return self._run_stages_device(resized, x, cfg, clock)
        with clock("prm"):
            out = self.prm.run({"image": x})
        n = int(out["count"][0])
        peaks = out["peaks"][:n]
        prm = np.ascontiguousarray(out["prm"][:n])
        stages = Stages(resized, out["class_scores"][0], peaks, prm, crm=out["crm"][0])
        if cfg.iterations > 0 and n:
            v = prm[:, None]
            with clock("icn"):
                for _ in range(cfg.iterations // self.unroll):
                    v = self.icn.run({"image": x, "prm": v}, ["map"])["map"]
            stages.enhanced = v[:, 0]
        return stages

    def _run_stages_device(self, resized: np.ndarray, x: np.ndarray, cfg: SegmentConfig,
                           clock: Clock = no_clock) -> Stages:
        """``run_stages`` with device-resident outputs (see ``_device_stages``)."""
        return self._device_stages(resized, x, cfg, clock, True)[0]

    def _device_stages(self, resized: np.ndarray, x: np.ndarray, cfg: SegmentConfig,
                       clock: Clock, maps_to_host: bool) -> tuple[Stages, Any]:
        """(Stages, final device maps [K, H, W] or None without peaks): the naive PRMs feed the
        ICN in place, each ICN pass feeds the next; only the small outputs come back (and the
        final maps, with ``maps_to_host``)."""
        prm, icn = self.prm, self.icn
        with clock("prm"):
            out = prm.run_device({"image": x})
            n = int(prm.to_host(out["count"])[0])  # waits for the engine
        host = {k: prm.to_host(out[k]) for k in ("class_scores", "peaks", "crm")}
        naive = out["prm"].rows(n)
        stages = Stages(resized, host["class_scores"][0], host["peaks"][:n], prm.to_host(naive),
                        crm=host["crm"][0])
        maps = naive if n else None
        if cfg.iterations > 0 and n:
            v = naive.reshape(n, 1, *naive.shape[1:])
            with clock("icn"):
                for _ in range(cfg.iterations // self.unroll):
                    v = icn.run_device({"image": x, "prm": v}, ["map"])["map"]
                maps = v.reshape(n, *v.shape[2:])
                if maps_to_host:
                    stages.enhanced = icn.to_host(v)[:, 0]
        return stages, maps

    def matches_on_device(self, cfg: SegmentConfig) -> bool:
        """True when ``segment`` matches with the CUDA kernels (GPU, pycuda, supported cfg)."""
        from icnseg.runtime.device_match import device_matcher_available

        return self.on_device and device_matcher_available(cfg)

    def segment_resized(self, resized: np.ndarray, shape: tuple[int, int],
                        proposals: Proposals | None, cfg: SegmentConfig) -> list[Instance]:
        """Instances at ``shape`` of an image already resized to the model input (uint8)."""
        return self.segment_with_stages(resized, shape, proposals, cfg)[0]

    def segment_with_stages(self, resized: np.ndarray, shape: tuple[int, int],
                            proposals: Proposals | None, cfg: SegmentConfig,
                            clock: Clock = no_clock, keep_maps: bool = False
                            ) -> tuple[list[Instance], Stages]:
        """``segment_resized`` plus the image's Stages (on a GPU the final maps are copied to
        the host only with ``keep_maps``, e.g. for a comparison). Thread-safe."""
        if not self.matches_on_device(cfg):
            stages = self.run_stages(resized, cfg, clock)
            return segment_stages(stages, shape, self.classes, cfg, proposals, clock), stages
        from icnseg.runtime.device_match import match_on_device

        _, x = prepare_input(resized, self.input_size, self.mean, self.std)
        stages, maps = self._device_stages(resized, x, cfg, clock, keep_maps)
        if maps is None:
            return [], stages
        with clock("proposals"):
            proposals = proposals_for(resized, proposals)
        stream = None
        if self.backend_name == "tensorrt":
            from icnseg.cuda import shared_stream

            stream = shared_stream()
        with clock("matcher"):  # binarise, Eq. 5, arg-max and NMS: one device chain
            instances = match_on_device(stages, maps, proposals, self.classes, cfg,
                                        normalize=cfg.iterations == 0, stream=stream)
        with clock("postprocess"):
            return rescale_instances(instances, shape), stages

    def segment(self, image_rgb_uint8: np.ndarray, proposals: Proposals | None = None,
                config: SegmentConfig | None = None) -> list[Instance]:
        """Segment one RGB uint8 image; masks at the image's own size."""
        cfg = config or self.segment_config()
        self.check_config(cfg)
        image = check_image(image_rgb_uint8)
        resized, _ = prepare_input(image, self.input_size, self.mean, self.std)
        return self.segment_resized(resized, image.shape[:2], proposals, cfg)

    def close(self) -> None:
        """Release the backends."""
        for b in (self.prm, self.icn):
            if b is not None:
                b.close()

    def __enter__(self) -> ExportedModel:
        """Context manager: returns self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager: closes."""
        self.close()

