"""The matching stage of Algorithm 1 on the GPU, with one synchronisation per image.

enhanced maps (device float32 [K, h, w]) -> upsampled to the proposals' size -> binarise
(min-max first for raw PRMs) -> contour E(V) and "dilate" background B(V) (not for "iou") ->
bit-pack -> Eq. 5 "icn" or Jaccard "iou" scores [K, N] (popcount over packed proposals, or
superpixel sums when the proposals are unions of superpixels) -> arg-max -> instance scores
-> class-aware greedy mask NMS (popcount IoU). Every kernel is queued on one stream; the
host waits once, for the small results. The outputs equal what
``icnseg.postprocess.select_instances`` computes with numpy (``DeviceMatch``); scores are
computed in double from exact pixel counts, so they are bit-identical, not just close.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from icnseg.errors import ConfigError, IcnsegError, InputError
from icnseg.instance import Instance
from icnseg.matching import MatchConfig
from icnseg.notice import notice
from icnseg.postprocess import instance_score, instances_from
from icnseg.proposals.types import Proposals
from icnseg.runtime import cuda_kernels as ck
from icnseg.runtime import cuda_launch as cl
from icnseg.runtime import cuda_nms, cuda_superpixel
from icnseg.runtime.backend import DeviceArray
from icnseg.segmenter import Stages
from icnseg.settings import SegmentConfig

__all__ = ["DeviceMatch", "DeviceProposals", "as_gpuarray", "check_supported",
           "device_matcher_available", "match_instances", "match_on_device", "upload_proposals"]

_pinned = threading.local()  # per thread: page-locked download buffers, reused across calls
_kernels_load: dict[str, bool] = {}  # "ok": did the kernel modules load (tried once)


@dataclass(frozen=True, eq=False)
class DeviceProposals:
    """One image's proposals on the device: packed masks and areas (+ superpixel factors)."""

    packed: Any  # uint32 [N, ceil(H*W/32)], the layout of Proposals.packed()
    areas: Any  # int32 [N] pixel counts
    shape: tuple[int, int]  # (H, W)
    labels: Any = None  # int32 [H, W] superpixel labels, or None
    membership: Any = None  # uint8 [N, S], or None

    def __len__(self) -> int:
        return int(self.packed.shape[0])


@dataclass(frozen=True, eq=False)
class DeviceMatch:
    """Host results of ``match_instances`` (the numbers select_instances builds on)."""

    index: np.ndarray  # int64 [K]: best proposal of each instance, -1 when none
    quality: np.ndarray  # float64 [K]: its Eq. 5 score, -inf when none
    score: np.ndarray  # float64 [K]: class confidence x clip(quality, 0, 1)
    kept: np.ndarray  # int64 [M]: instances kept by NMS, highest score first


def _unsupported(cfg: MatchConfig) -> str | None:
    """Why the device chain cannot match with ``cfg`` ("icn" scoring with the "dilate"
    background, or "iou"), or None."""
    if cfg.scoring == "iou" or (cfg.scoring == "icn" and cfg.background == "dilate"):
        return None
    return (f"the CUDA matcher implements scoring='icn' with background='dilate' and "
            f"scoring='iou', not scoring={cfg.scoring!r}, background={cfg.background!r}")


def check_supported(cfg: MatchConfig) -> None:
    """ConfigError unless the device chain implements ``cfg`` (see ``_unsupported``)."""
    why = _unsupported(cfg)
    if why:
        raise ConfigError(f"{why}; use the CPU matcher (icnseg.postprocess.select_instances)")


def upload_proposals(proposals: Proposals, stream: Any = None,
                     superpixels: bool = True) -> DeviceProposals:
    """Put one image's proposals on the device once: factorised ones are packed there from
    labels + membership (and keep the factors for superpixel sums), others are packed on the
    host and copied. ``superpixels=False`` ignores the factorisation."""
    if not isinstance(proposals, Proposals):
        raise InputError(f"proposals must be Proposals, got {type(proposals).__name__}")
    labels = member = None
    if superpixels and proposals.membership is not None:
        labels = cl.upload(proposals.superpixels.astype(np.int32), stream)
        member = cl.upload(proposals.membership.astype(np.uint8), stream)
        packed = cuda_superpixel.pack_unions(labels, member, stream=stream)
    else:
        packed = cl.upload(proposals.packed(), stream)
    areas = ck.popcount_rows(packed, stream=stream)
    return DeviceProposals(packed, areas, proposals.shape, labels, member)


def _scores(packed: Any, props: DeviceProposals, k: int, cfg: MatchConfig, stream: Any,
            scratch: list) -> Any:
    """Scores float64 [K, N]: Eq. 5 "icn" from packed V, E, B rows [3K, W32], or "iou" from
    packed V rows [K, W32]."""
    if props.labels is not None:
        s = int(props.membership.shape[1])
        counts = cuda_superpixel.superpixel_counts(packed, props.labels, s, stream=stream)
        sums = cuda_superpixel.member_matmul(counts, props.membership, stream=stream)
        scratch.extend([counts, sums])
    if cfg.scoring == "iou":
        if props.labels is None:
            return ck.jaccard_scores(packed, props.packed, stream=stream)
        v_total = ck.popcount_rows(packed, stream=stream)
        scratch.append(v_total)
        return cuda_superpixel.jaccard_from_sums(sums, props.areas, v_total, stream=stream)
    v, e, b = packed[:k], packed[k:2 * k], packed[2 * k:]
    if props.labels is None:
        return ck.match_scores(v, e, b, props.packed, props.areas, cfg.alpha, cfg.beta,
                               cfg.gamma, stream=stream)
    edge_total = ck.popcount_rows(e, stream=stream)
    scratch.append(edge_total)
    return cuda_superpixel.eq5_from_sums(sums, props.areas, edge_total, cfg.alpha, cfg.beta,
                                         cfg.gamma, stream=stream)


def _staging(slot: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A page-locked host array for download ``slot`` (grown on demand, then reused: pinning
    memory is slow)."""
    buffers = _pinned.__dict__.setdefault("buffers", {})
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if slot not in buffers or buffers[slot].nbytes < nbytes:
        buffers[slot] = cl.driver().pagelocked_empty((max(nbytes, 4096),), np.uint8)
    return buffers[slot][:nbytes].view(dtype).reshape(shape)


def _download(arrays: list[Any], stream: Any) -> list[np.ndarray]:
    """Queue device-to-host copies into page-locked memory, synchronise once, return copies."""
    with cl.check_cuda("reading the matcher results"):
        hosts = [_staging(i, tuple(a.shape), a.dtype) for i, a in enumerate(arrays)]
        for arr, host in zip(arrays, hosts, strict=True):
            arr.get_async(stream=stream, ary=host)
        if stream is None:
            cl.driver().Context.synchronize()
        else:
            stream.synchronize()
    return [np.array(h) for h in hosts]


def match_instances(maps: Any, proposals: DeviceProposals | Proposals, classes: np.ndarray,
                    confidence: np.ndarray, cfg: SegmentConfig | None = None,
                    normalize: bool = False, stream: Any = None) -> DeviceMatch:
    """Match K instance maps to proposals and run NMS on the device (select_instances).

    maps: device float32 [K, H, W], the ICN output (binarised at ``cfg.threshold``) or, with
    ``normalize=True``, raw PRMs (min-max normalised, binarised at ``cfg.naive_threshold``);
    classes: int [K] class of each instance; confidence: [K] class confidence of each
    instance (``class_conf[classes]``). stream: where to queue the work; pass the stream
    that produced ``maps`` (e.g. the TensorRT engines' stream) so the chain runs after it;
    None = the legacy default stream, which waits for every blocking stream's earlier work.
    """
    cfg = cfg or SegmentConfig()
    check_supported(cfg.match)
    cl.check(maps, "maps", 3, (np.float32,))
    k, h, w = (int(s) for s in maps.shape)
    classes = np.asarray(classes).reshape(-1)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if len(classes) != k or len(confidence) != k:
        raise InputError(f"need one class and confidence per map: {k} maps, {len(classes)} "
                         f"classes, {len(confidence)} confidences")
    if k and h * w == 0:
        raise InputError(f"maps must have at least one pixel, got shape {(k, h, w)}")
    if not isinstance(proposals, (Proposals, DeviceProposals)):
        raise InputError(f"proposals must be Proposals or DeviceProposals, got "
                         f"{type(proposals).__name__}")
    if tuple(proposals.shape) != (h, w):
        raise InputError(f"maps are {(h, w)} but proposals are {tuple(proposals.shape)}")
    if k == 0 or len(proposals) == 0:
        quality = np.full(k, -np.inf)
        return DeviceMatch(np.full(k, -1, np.int64), quality,
                           instance_score(confidence, quality), np.zeros(0, np.int64))
    # Copies from pageable host memory wait for the stream: make them all before any launch.
    conf_d = cl.upload(confidence, stream)
    cls_d = cl.upload(classes.astype(np.int32), stream)
    props = proposals if isinstance(proposals, DeviceProposals) else upload_proposals(
        proposals, stream)
    scratch: list = [props]
    layers = 1 if cfg.match.scoring == "iou" else 3  # "iou" needs V only, no E(V) or B(V)
    veb = cl.empty((layers * k, h, w), np.uint8)  # V, E, B stacked: one pack launch for all
    threshold = cfg.naive_threshold if normalize else cfg.threshold
    ck.minmax_binarize(maps, threshold, normalize=normalize, out=veb[:k], stream=stream)
    if layers == 3:
        ck.contour(veb[:k], cfg.match.contour_width, out=veb[k:2 * k], stream=stream,
                   scratch=scratch)
        ck.background(veb[:k], cfg.match.dilate_radius, out=veb[2 * k:], stream=stream,
                      scratch=scratch)
    packed = ck.pack_masks(veb, stream=stream)
    scores = _scores(packed, props, k, cfg.match, stream, scratch)
    index, quality = ck.argmax_rows(scores, stream=stream)
    score, valid = cuda_nms.instance_scores(quality, conf_d, cfg.min_quality, stream=stream)
    kept, count = cuda_nms.nms_rows(props.packed, index, score, cls_d, valid,
                                    cfg.match.nms_iou, stream=stream, scratch=scratch)
    scratch.extend([veb, packed, scores, valid, conf_d, cls_d])
    index_h, quality_h, score_h, kept_h, count_h = _download(
        [index, quality, score, kept, count], stream)
    return DeviceMatch(index_h.astype(np.int64), quality_h, score_h,
                       kept_h[: int(count_h[0])].astype(np.int64))


# The glue between an exported model's device-resident maps and the chain above: the maps an
# engine (or ORT's CUDA EP) leaves on the GPU go straight in, no host copy of [K, H, W].

def device_matcher_available(cfg: SegmentConfig) -> bool:
    """True when ``cfg`` uses what the CUDA matcher implements and its kernels load here.

    The kernel modules are really loaded, once per process (fatbin, else nvcc); when they
    cannot be, or ``cfg`` asks for a rule they lack, that is announced once in one line and
    the numpy matcher is used.
    """
    why = _unsupported(cfg.match)
    if why:
        notice(f"matching with numpy instead: {why}")
        return False
    if "ok" not in _kernels_load:
        first = {stem: name for name, (stem, _) in reversed(cl.KERNELS.items())}
        try:
            for name in first.values():
                cl.function(name)
            _kernels_load["ok"] = True
        except Exception as exc:  # noqa: BLE001 - whatever stops the kernels, numpy still works
            why = str(exc) if isinstance(exc, IcnsegError) else f"{type(exc).__name__}: {exc}"
            notice(f"CUDA matcher unavailable, matching with numpy instead ({why})")
            _kernels_load["ok"] = False
    return _kernels_load["ok"]


def as_gpuarray(arr: DeviceArray) -> Any:
    """A pycuda GPUArray view of a CUDA DeviceArray (no copy; the owner stays referenced)."""
    if arr.device != "cuda":
        raise ConfigError(f"the CUDA matcher needs maps on the GPU, not on {arr.device!r}")
    view = cl.gpuarray().GPUArray(arr.shape, arr.dtype, gpudata=int(arr.ptr))
    view.icnseg_owner = arr.owner  # keeps the engine / OrtValue buffer alive with the view
    return view


def match_on_device(stages: Stages, maps: DeviceArray, proposals: Proposals, classes,
                    cfg: SegmentConfig, normalize: bool, stream: Any = None
                    ) -> list[Instance]:
    """Instances at the proposals' size from device maps [K, h, w] (float32): ICN maps are
    upsampled there on the device first (``cuda_kernels.upsample``); raw PRMs (``normalize``)
    must already have that size (their min-max comes before the upsampling)."""
    cls = stages.peaks[:, 0].astype(int)
    maps = as_gpuarray(maps)
    scratch: list = []
    if tuple(maps.shape[1:]) != proposals.shape:
        if normalize:
            raise ConfigError("the CUDA matcher upsamples ICN maps only; raw PRMs (T = 0) of "
                              "another size than the proposals take the numpy matcher")
        maps = ck.upsample(maps, proposals.shape, stream=stream, scratch=scratch)
    match = match_instances(maps, proposals, cls, stages.class_conf[cls], cfg,
                            normalize=normalize, stream=stream)
    return instances_from(stages, proposals, classes, match.kept, match.index, cls,
                          match.score, match.quality)
