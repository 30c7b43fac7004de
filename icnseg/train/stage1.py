"""Stage 1 (paper 4.2): the PRM classifier trained on image-level labels only."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from icnseg import __version__
from icnseg.checkpoint import load_checkpoint, save_checkpoint
from icnseg.data.transforms import MEAN, STD
from icnseg.eager import EagerModel
from icnseg.errors import ConfigError, IcnsegError
from icnseg.train.common import (
    check_positive,
    check_train_out,
    classification_map,
    fit,
    resume_path,
    seed_everything,
)


@dataclass(frozen=True)
class Stage1Config:
    """Stage-1 settings; defaults follow the paper (section 4.2) and the original PRM."""

    data: str  # VOC-layout root (synthetic or PASCAL VOC 2012)
    out: str  # checkpoint to write (.safetensors or .pt)
    backbone: Literal["tiny", "vgg16", "resnet50"] = "resnet50"  # PRM used ResNet-50
    pretrained: str | None = None  # torchvision ImageNet weights file for the backbone
    init: str | None = None  # stage-1 checkpoint to start from (fine-tune / continue)
    input_size: int = 448  # square training/inference size
    epochs: int = 20  # paper: 20 epochs
    lr: float = 1e-4  # paper: Adam 1e-4 ...
    lr_step: int = 10  # ... x0.1 after 10 epochs
    lr_gamma: float = 0.1  # learning-rate factor at each step
    batch_size: int = 16  # images per step
    crop_scale: float = 0.7  # random crop keeps >= this fraction of each side, then resize
    # Colour change per image (saturation, contrast, brightness, channel order): a classifier
    # trained on one look fires on another's backgrounds and misses its desaturated objects.
    color_jitter: float = 0.0  # strength of random_appearance (0 = off, 1 = widest)
    window: int = 3  # peak stimulation window (original PRM)
    upsample: int = 1  # peak stimulation sub-pixel factor
    train_split: str = "train"  # ImageSets split to train on
    val_split: str = "val"  # ImageSets split for the classification mAP after training
    seed: int = 0  # random seed (data order, augmentation, init)
    # From scratch, the loss sits on a plateau (the classes' base rates) for a number of
    # epochs that depends on the seed; restarts keep the run that left it best.
    restarts: int = 1  # train from seeds seed..seed+restarts-1, keep the best val mAP
    workers: int = 0  # DataLoader worker processes


def _image_tensor(image: np.ndarray, size: int):
    from icnseg.data.transforms import normalize, resize

    return normalize(resize(image, (size, size)), MEAN, STD)


def _train_item(sample, cfg: Stage1Config, rng: np.random.Generator):
    """Flip + crop (+ colour) + resize + normalise one training sample (paper 4.2)."""
    from icnseg.data.transforms import random_appearance, random_crop, random_flip

    image = random_flip(rng, sample.image)[0]
    image = random_crop(rng, image, scale=(cfg.crop_scale, 1.0))[0]
    if cfg.color_jitter > 0:
        image = random_appearance(rng, image, cfg.color_jitter)
    return _image_tensor(image, cfg.input_size)


def class_scores(classifier, dataset, size: int, window: int = 3, upsample: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Peak-stimulation class logits [N,C] of ``classifier`` and the labels [N,C] of every
    image of ``dataset``, each image resized to ``size`` x ``size``."""
    import torch

    from icnseg.models.prm import peak_stimulation

    scores, labels = [], []
    classifier.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            x = torch.from_numpy(_image_tensor(s.image, size))[None]
            sc, _ = peak_stimulation(classifier(x), window=window, upsample=upsample)
            scores.append(sc[0].numpy())
            labels.append(s.labels)
    return np.stack(scores), np.stack(labels)


def evaluate_classifier(classifier, dataset, cfg: Stage1Config) -> float:
    """Classification mAP of ``classifier`` on ``dataset`` (peak-stimulation class scores)."""
    return classification_map(*class_scores(classifier, dataset, cfg.input_size, cfg.window,
                                            cfg.upsample))


def checkpoint_config(cfg: Stage1Config, classes: tuple[str, ...]) -> dict:
    """The config stored in a stage-1 checkpoint."""
    return {
        "classes": list(classes),
        "backbone": cfg.backbone,
        "icn_encoder": None,
        "input_size": [cfg.input_size, cfg.input_size],
        "mean": list(MEAN),
        "std": list(STD),
        "stage1": asdict(cfg),
        "icnseg_version": __version__,
    }


def train_stage1(cfg: Stage1Config, log=print) -> dict:
    """Train the classifier, write ``cfg.out``; returns a summary with the validation mAP.
    With ``restarts`` > 1, one run per seed, and the best on the val split is kept."""
    check_train_out(cfg)  # before any work: a failed save at the end loses the run
    check_positive(restarts=cfg.restarts)
    if cfg.restarts == 1:
        return _train_once(cfg, log)
    from icnseg.data.voc import VocDataset

    if not cfg.val_split or not len(VocDataset(cfg.data, cfg.val_split)):
        raise ConfigError(f"{cfg.data}: --restarts keeps the run with the best val mAP, but "
                          f"the --val-split {cfg.val_split!r} has no images")
    out = Path(cfg.out)
    parts = {seed: replace(cfg, seed=seed, restarts=1,
                           out=str(out.with_name(f"{out.stem}.seed{seed}{out.suffix}")))
             for seed in range(cfg.seed, cfg.seed + cfg.restarts)}
    done = {seed: _finished(part) for seed, part in parts.items()}  # before any training
    ckpts = {}
    for seed, part in parts.items():
        if done[seed]:
            log(f"stage1 restarts: {part.out} is this run's seed {seed}, finished; kept")
        else:
            _train_once(part, log)
        ckpts[seed] = load_checkpoint(part.out)
    maps = {s: c.config["metrics"]["val_classification_mAP"] for s, c in ckpts.items()}
    best = max(maps, key=lambda s: np.nan_to_num(maps[s], nan=-1.0))
    ckpt = ckpts[best]
    config = dict(ckpt.config, stage1=dict(ckpt.config["stage1"], out=cfg.out,
                                           restarts=cfg.restarts))
    config["metrics"] = dict(config["metrics"], restarts={str(s): m for s, m in maps.items()})
    save_checkpoint(cfg.out, ckpt.state, config)
    for part in parts.values():
        Path(part.out).unlink(missing_ok=True)
    log(f"stage1 restarts: val classification mAP {maps} -> seed {best} kept in {cfg.out}")
    return {"val_classification_mAP": maps[best], "seed": best}


def _finished(part: Stage1Config) -> bool:
    """True when an interrupted --restarts run left ``part``'s checkpoint; any other file at
    that path is refused, so nothing of the user's is overwritten."""
    path = Path(part.out)
    if not path.exists():
        return False
    try:
        ckpt = load_checkpoint(path)
    except IcnsegError:
        ckpt = None
    if ckpt is None or ckpt.config.get("stage1") != asdict(part):
        raise ConfigError(f"{path}: exists and is not this --restarts run's seed {part.seed}; "
                          "move it or choose another --out")
    return True


def _train_once(cfg: Stage1Config, log) -> dict:
    """One stage-1 run from ``cfg.seed``."""
    import torch
    import torch.nn.functional as F

    from icnseg.data.voc import VocDataset
    from icnseg.models.backbones import load_pretrained
    from icnseg.models.prm import PRMClassifier, peak_stimulation

    check_positive(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, input_size=cfg.input_size
    )
    if cfg.input_size % 32:
        raise ConfigError(f"--input-size must be a multiple of 32 (got {cfg.input_size})")
    seed_everything(cfg.seed)
    train = VocDataset(cfg.data, cfg.train_split)
    val = VocDataset(cfg.data, cfg.val_split) if cfg.val_split else None
    model = PRMClassifier(cfg.backbone, len(train.classes))
    if cfg.pretrained:
        load_pretrained(model.backbone, cfg.pretrained)
    if cfg.init:
        start_from = EagerModel.from_checkpoint(load_checkpoint(cfg.init))
        same_classes = start_from.classes == tuple(train.classes)
        if start_from.config["backbone"] != cfg.backbone or not same_classes:
            raise ConfigError(f"{cfg.init}: --init needs a {cfg.backbone} checkpoint with classes "
                              f"{', '.join(train.classes)}")
        model.load_state_dict(start_from.classifier.state_dict())
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    config = checkpoint_config(cfg, tuple(train.classes))
    rpath = resume_path(cfg.out)
    t0 = time.time()

    def batch_loss(idx, rng, _epoch):
        samples = [train[int(i)] for i in idx]
        x = torch.from_numpy(np.stack([_train_item(s, cfg, rng) for s in samples]))
        y = torch.from_numpy(np.stack([s.labels for s in samples]).astype(np.float32))
        scores, _ = peak_stimulation(model(x), window=cfg.window, upsample=cfg.upsample)
        return F.binary_cross_entropy_with_logits(scores, y)  # multi-label loss (PRM)

    fit("stage1", model, optim, len(train), cfg, config, rpath, batch_loss, log, t0)
    val_map = evaluate_classifier(model, val, cfg) if val is not None and len(val) else float("nan")
    model.eval()
    state = {f"classifier.{k}": v for k, v in model.state_dict().items()}
    config["metrics"] = {"val_classification_mAP": val_map}
    save_checkpoint(cfg.out, state, config)
    rpath.unlink(missing_ok=True)
    log(f"stage1 done: val classification mAP {val_map:.3f}, {time.time() - t0:.0f}s -> {cfg.out}")
    return {"val_classification_mAP": val_map, "seconds": time.time() - t0}
