"""Stage 2 (paper 3.2, 4.2): the ICN trained on pseudo labels of the frozen stage-1 model."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from icnseg.checkpoint import load_checkpoint, save_checkpoint
from icnseg.errors import ConfigError
from icnseg.models.build import load_strict
from icnseg.train.common import (
    check_positive,
    check_train_out,
    fit,
    resume_path,
    seed_everything,
)
from icnseg.train.cues import with_rough_cues
from icnseg.train.pseudo_labels import (
    Target,
    check_label_source,
    naive_prms,
    proposal_targets,
    saliency_targets,
)


@dataclass(frozen=True)
class Stage2Config:
    """Stage-2 settings; defaults follow the paper (sections 3.2 and 4.2)."""

    data: str  # VOC-layout root whose train split supplies images
    out: str  # checkpoint to write (classifier + ICN)
    stage1: str  # stage-1 checkpoint (frozen classifier)
    icn_encoder: Literal["vgg16", "tiny"] = "vgg16"  # paper: VGG-16 encoder; "tiny" for CPU
    # Table 1's ablations: without CFM and DFM, or without the input PRM
    icn_variant: Literal["full", "no_fusion", "no_prm"] = "full"  # ICN architecture variant
    epochs: int = 120  # paper: 120 epochs ...
    lr: float = 1e-3  # ... Adam 1e-3 ...
    lr_step: int = 20  # ... x0.5 every 20 epochs
    lr_gamma: float = 0.5  # learning-rate factor at each step
    batch_size: int = 8  # (PRM, image) samples per step
    k: int = 3  # pseudo label = union of the top k proposals (paper: k = 3)
    iterations: int = 3  # T, ICN passes at test time (paper: 3); fed-back inputs take 1..T-1
    # A T measured better for this ICN than the one it trained for (ablation, Table 4).
    default_iterations: int | None = None  # T saved as the model's default (None: iterations)
    # Class-presence threshold (PeakConfig.score_threshold) saved as the model's test-time
    # default; the targets are built with the stage-1 checkpoint's, so the weights are the same.
    default_score_threshold: float | None = None  # saved class threshold (None: stage 1's)
    # Share of training inputs replaced by the ICN's own output on that PRM (1 to T-1 passes,
    # no gradient), so the test-time loop of T passes sees inputs like those it trained on.
    feedback: float = 0.0  # share of inputs replaced by the ICN's own fed-back output (0..1)
    # An untrained ICN's output is noise, and min-max normalising it fed back teaches
    # nothing (a run without this warm-up collapsed to empty maps).
    feedback_after: int = 1  # epochs of plain naive-PRM inputs before fed-back ones start
    # Share of inputs replaced by a rough soft copy of their label (train/cues.py): a fixed
    # stand-in for a pass-(t-1) output, so passes t > 1 learn to refine (T = 3 at test time).
    rough_cues: float = 0.0  # share of inputs replaced by a rough copy of their label (0..1)
    # Train the test-time loop itself: T passes chained with gradients through every one
    # (pass t reads pass t-1's output, Algorithm 1), Eq. 4 averaged over the passes.
    unrolled: bool = False  # loss at each of the T chained passes, gradients through all
    # Pass t's loss weighted by gamma^(T - t), normalised to sum 1 (RAFT's sequence loss):
    # below 1 the early passes need not finish the map, the later ones are held to it.
    unrolled_gamma: float = 1.0  # per-pass weight decay toward earlier passes (1: average)
    # A peak its labels leave without a mask (its PRM touches no instance) otherwise teaches
    # nothing, and the ICN learns to pull every cue onto the nearest object; passes t > 1
    # then move background peaks onto objects (benchmarks/results/pass_iou.md).
    negatives: bool = False  # such peaks learn an empty map instead of being skipped
    init: str | None = None  # start the ICN from this checkpoint's ICN (None: random init)
    labels: str = "proposals"  # proposals | saliency (instance-saliency masks as labels)
    saliency_dir: str | None = None  # VOC-layout dir of instance masks for labels=saliency
    proposals: str = "builtin"  # builtin | a directory of precomputed proposals per image id
    rule: Literal["prm", "gradient"] = "prm"  # PRM backprop rule
    pseudo_scoring: Literal["icn", "paper", "prm", "iou"] = "prm"  # pseudo labels' matching rule
    pseudo_blur: float = 0.0  # > 0: match a blob of the PRM smoothed by this sigma (input px)
    pseudo_blob_threshold: float = 0.1  # blob = smoothed PRM >= this x its maximum
    # A second round (paper 3.2's labels from better maps): match the maps of a first ICN,
    # run on the naive PRMs, instead of the naive PRMs themselves. The ICN trained still
    # gets the naive PRMs as its input.
    pseudo_icn: str | None = None  # labels=proposals: checkpoint whose ICN maps are matched
    pseudo_passes: int = 1  # ICN passes of that first ICN over each naive PRM
    crop_scale: float = 0.6  # random crop keeps >= this fraction of each side
    # The ICN's image input only (its PRM input and label come from the untouched image):
    # random_appearance of this strength, so a look the training never used is less new.
    color_jitter: float = 0.0  # strength of random_appearance (0 = off, 1 = widest)
    # Peak filters beyond Eq. 1 (PeakConfig), used for the targets and saved in the
    # checkpoint as the model's inference default. None/0 = Eq. 1 as printed.
    peak_min_response: float | None = None  # keep a peak only where M_c >= this (None: off)
    peak_relative: float = 0.0  # keep a peak only if P >= this x its class's largest P
    train_split: str = "train"  # ImageSets split to train on
    seed: int = 0  # random seed


def peak_settings(cfg: Stage2Config, config: dict) -> dict:
    """The checkpoint's peak settings with this run's filters applied."""
    return dict(config.get("peaks", {}), min_response=cfg.peak_min_response,
                relative=cfg.peak_relative)


def _proposals_for(cfg: Stage2Config, sample_id: str, image: np.ndarray):
    """The image's proposals at the matching size (its own, capped as at test time):
    built in from the full image, or the precomputed ones resized to it."""
    from icnseg.postprocess import proposals_for
    from icnseg.proposals.loaders import load_proposals_for
    from icnseg.settings import SegmentConfig

    given = (None if cfg.proposals == "builtin"
             else load_proposals_for(cfg.proposals, sample_id, image.shape[:2]))
    return proposals_for(image, given, SegmentConfig().match_max_side)


def _pseudo_labels(cfg: Stage2Config, match_cfg, prm: np.ndarray, props, size) -> list:
    """Top-k pseudo labels matched at the proposals' size (paper 3.2), resized to ``size``.

    Matching at the image's size, as at test time, raised the naive PRMs' labels' mean IoU
    with the true instance from 0.163 to 0.197 over matching at the 96-px model input
    (benchmarks/results/pseudo_label_iou.md).
    """
    from icnseg.data.transforms import resize_mask
    from icnseg.upsample import upsample_maps

    blur = cfg.pseudo_blur * props.shape[0] / size[0]  # sigma given in input pixels
    labels = proposal_targets(upsample_maps(prm, props.shape), props, match_cfg, cfg.k, blur,
                              cfg.pseudo_blob_threshold)
    return [resize_mask(m, size) for m in labels]


def _first_icn(cfg: Stage2Config):
    """The first-round ICN of ``--pseudo-icn`` (None without it), in eval mode."""
    if cfg.pseudo_icn is None:
        return None
    if cfg.labels != "proposals":
        raise ConfigError("--pseudo-icn makes proposal pseudo labels: it needs --labels "
                          f"proposals (got --labels {cfg.labels})")
    from icnseg.eager import EagerModel

    ckpt = load_checkpoint(cfg.pseudo_icn)
    _icn_state(ckpt, cfg.pseudo_icn, "--pseudo-icn")  # one line, before any model is built
    return EagerModel.from_checkpoint(ckpt).icn.eval()


def first_icn_maps(icn, model, image: np.ndarray, prm: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` ICN passes over the naive PRMs [K,H,W] of ``image`` (uint8 at the input)."""
    import torch

    from icnseg.data.transforms import normalize
    from icnseg.models.icn import enhance

    x = torch.from_numpy(normalize(image, model.mean, model.std))[None]
    with torch.no_grad():
        v = enhance(icn, x.expand(len(prm), -1, -1, -1), torch.from_numpy(prm)[:, None],
                    iterations=passes)
    return v[:, 0].numpy()


def build_targets(
    cfg: Stage2Config, model, dataset, log=print
) -> tuple[list[np.ndarray], list[Target]]:
    """Resized images and ICN targets for every training image (the classifier is frozen)."""
    from tqdm import tqdm

    from icnseg.data.transforms import resize
    from icnseg.matching import MatchConfig
    from icnseg.models.prm import PeakConfig

    peak_cfg = PeakConfig(**peak_settings(cfg, model.config))
    match_cfg = MatchConfig(scoring=cfg.pseudo_scoring)
    first = _first_icn(cfg)
    h, w = model.input_size
    images, targets = [], []
    for i in tqdm(range(len(dataset)), desc="stage2 targets", leave=False, disable=None):
        s = dataset[i]
        image = resize(s.image, (h, w))
        # A salient-instance set of other objects has no labels of the model's classes:
        # the classes the classifier finds there give the peaks, as at test time.
        present = s.labels > 0 if dataset.classes == model.classes else None
        peaks, prm = naive_prms(
            model.classifier, image, present, peak_cfg, cfg.rule, model.mean, model.std
        )
        images.append(image)
        if len(peaks) == 0:
            continue
        if cfg.labels == "saliency":
            from icnseg.data.transforms import resize_mask

            masks = (
                np.stack([resize_mask(m, (h, w)) for m in s.instance_masks])
                if len(s.instance_masks)
                else np.zeros((0, h, w), bool)
            )
            pairs = saliency_targets(prm, masks)
            labels = [masks[j] if j >= 0 else None for j in pairs]
        else:
            props = _proposals_for(cfg, s.id, s.image)
            cue = prm if first is None else first_icn_maps(first, model, image, prm,
                                                             cfg.pseudo_passes)
            labels = _pseudo_labels(cfg, match_cfg, cue, props, (h, w))
        for p, r, m in zip(peaks, prm, labels, strict=True):
            if m is None or not m.any():
                if not cfg.negatives:
                    continue
                m = np.zeros((h, w), bool)
            targets.append(Target(len(images) - 1, p, r.astype(np.float16), m))
    empty = (f" ({sum(not t.mask.any() for t in targets)} with an empty map, --negatives)"
             if cfg.negatives else "")
    log(f"stage2 targets: {len(targets)} instances from {len(images)} images{empty}")
    return images, targets


def _augment(rng: np.random.Generator, image, prm, mask, scale: float):
    """Random flip + crop, resized back to the input size (paper 4.2 augmentation)."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        image, prm, mask = image[:, ::-1], prm[:, ::-1], mask[:, ::-1]
    f = rng.uniform(scale, 1.0)
    ch, cw = max(1, round(h * f)), max(1, round(w * f))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = (slice(y, y + ch), slice(x, x + cw))
    image = cv2.resize(np.ascontiguousarray(image[crop]), (w, h), interpolation=cv2.INTER_LINEAR)
    prm = cv2.resize(
        np.ascontiguousarray(prm[crop], np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    mask = cv2.resize(
        np.ascontiguousarray(mask[crop], np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
    )
    return image, prm, mask.astype(bool)


def _fed_back(icn, x, r, rng: np.random.Generator, share: float, iterations: int):
    """Replace a random ``share`` of the PRM inputs by 1..T-1 ICN passes over them."""
    import torch

    chosen = np.flatnonzero(rng.random(len(r)) < share)
    passes = rng.integers(1, iterations, len(chosen))
    if not len(chosen):
        return r
    r = r.clone()
    idx = torch.from_numpy(chosen)
    v, xs, n = r[idx], x[idx], torch.from_numpy(passes)
    with torch.no_grad():
        for step in range(1, iterations):
            more = n >= step
            if more.any():
                v[more] = icn(xs[more], v[more])
    r[idx] = v
    return r


def pass_weights(iterations: int, gamma: float) -> list[float]:
    """Unrolled loss weights of passes 1..T: gamma^(T - t), normalised to sum 1."""
    if not 0 < gamma <= 1:
        raise ConfigError(f"--unrolled-gamma must be in (0, 1] (got {gamma})")
    w = [gamma ** (iterations - t) for t in range(1, iterations + 1)]
    return [v / sum(w) for v in w]


def _icn_state(ckpt, path: str, flag: str) -> dict:
    """The ICN weights of ``ckpt``, the icnseg checkpoint ``path`` given to ``flag``."""
    icn = ckpt.sub_state("icn")
    if not icn:
        raise ConfigError(f"{path}: {flag} needs a checkpoint with an ICN (a stage-2 one)")
    return icn


def train_stage2(cfg: Stage2Config, log=print) -> dict:
    """Train the ICN on pseudo labels and write a full checkpoint (classifier + ICN)."""
    check_train_out(cfg)  # before any work: a failed save at the end loses the run
    import torch
    import torch.nn.functional as F

    from icnseg.data.transforms import normalize, random_appearance
    from icnseg.data.voc import VocDataset
    from icnseg.eager import EagerModel
    from icnseg.models.icn import ICN

    check_positive(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, k=cfg.k,
                   pseudo_passes=cfg.pseudo_passes)
    if cfg.default_iterations is not None:
        check_positive(default_iterations=cfg.default_iterations)
    if cfg.default_score_threshold is not None and not 0 <= cfg.default_score_threshold <= 1:
        raise ConfigError("--default-score-threshold must be in [0, 1] (got "
                          f"{cfg.default_score_threshold})")
    check_label_source(cfg.labels, cfg.saliency_dir)
    weights = pass_weights(cfg.iterations, cfg.unrolled_gamma)
    if cfg.unrolled_gamma != 1 and not cfg.unrolled:
        raise ConfigError("--unrolled-gamma weights the passes of --unrolled training: add "
                          "--unrolled or drop it")
    seed_everything(cfg.seed)
    model = EagerModel.from_checkpoint(load_checkpoint(cfg.stage1))
    for p in model.classifier.parameters():
        p.requires_grad_(False)
    root = cfg.saliency_dir if cfg.labels == "saliency" else cfg.data
    # A saliency set is class-agnostic (its own classes.txt); the target data has the model's.
    dataset = VocDataset(root, cfg.train_split,
                         classes=None if cfg.labels == "saliency" else model.classes)
    icn = ICN(encoder=cfg.icn_encoder, variant=cfg.icn_variant)
    if cfg.init:  # before the targets' minutes: an --init of another architecture is one line
        load_strict(icn, _icn_state(load_checkpoint(cfg.init), cfg.init, "--init"),
                    Path(cfg.init), f"--init ICN (for --icn-encoder {cfg.icn_encoder} "
                    f"--icn-variant {cfg.icn_variant})")
    t0 = time.time()
    images, targets = build_targets(cfg, model, dataset, log)
    if not targets:
        raise ConfigError(f"{root}: no training targets (no peaks or empty pseudo labels)")
    optim = torch.optim.Adam(icn.parameters(), lr=cfg.lr)
    peaks = peak_settings(cfg, model.config)
    if cfg.default_score_threshold is not None:
        peaks["score_threshold"] = cfg.default_score_threshold
    config = dict(model.config, icn_encoder=cfg.icn_encoder, icn_variant=cfg.icn_variant,
                  stage2=asdict(cfg), peaks=peaks,
                  segment=dict(model.config.get("segment", {}),
                               iterations=cfg.iterations if cfg.default_iterations is None
                               else cfg.default_iterations))
    rpath = resume_path(cfg.out)

    def batch_loss(idx, rng, epoch):
        batch = [targets[int(i)] for i in idx]
        items = [_augment(rng, images[t.image_index], t.prm.astype(np.float32), t.mask,
                          cfg.crop_scale) for t in batch]
        if cfg.color_jitter > 0:
            items = [(random_appearance(rng, im, cfg.color_jitter), p, m) for im, p, m in items]
        x = torch.from_numpy(np.stack([normalize(im, model.mean, model.std) for im, _, _ in items]))
        masks = np.stack([m for _, _, m in items])
        prms = np.stack([p for _, p, _ in items])
        if cfg.rough_cues > 0:
            prms = with_rough_cues(prms, masks, rng, cfg.rough_cues)
        r = torch.from_numpy(prms)[:, None]
        y = torch.from_numpy(masks.astype(np.float32))[:, None]
        if cfg.feedback > 0 and cfg.iterations > 1 and epoch >= cfg.feedback_after:
            r = _fed_back(icn, x, r, rng, cfg.feedback, cfg.iterations)
        if not cfg.unrolled:
            return F.binary_cross_entropy_with_logits(icn.logits(x, r), y)  # Eq. 4
        loss = 0.0
        for w in weights:
            logits = icn.logits(x, r)
            loss = loss + w * F.binary_cross_entropy_with_logits(logits, y)
            r = torch.sigmoid(logits)  # the next pass's input, as ``enhance`` feeds it
        return loss

    fit("stage2", icn, optim, len(targets), cfg, config, rpath, batch_loss, log, t0)
    icn.eval()
    state = {f"classifier.{k}": v for k, v in model.classifier.state_dict().items()}
    state.update({f"icn.{k}": v for k, v in icn.state_dict().items()})
    save_checkpoint(cfg.out, state, config)
    rpath.unlink(missing_ok=True)
    log(f"stage2 done: {len(targets)} targets, {time.time() - t0:.0f}s -> {cfg.out}")
    return {"targets": len(targets), "seconds": time.time() - t0}
