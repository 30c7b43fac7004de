"""What both training stages share: seeding, step schedules, resume files, classification AP."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import CheckpointError, ConfigError
from icnseg.fileio import atomic_path


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """Augmentation RNG of one epoch: a resumed run draws exactly what the full run drew."""
    return np.random.default_rng([seed, epoch])


def step_lr(base: float, epoch: int, step: int, gamma: float) -> float:
    """Learning rate of ``epoch`` under a step schedule (x gamma every ``step`` epochs)."""
    return base * gamma ** (epoch // step) if step > 0 else base


def check_positive(**values: float) -> None:
    """Raise ConfigError for the first value that is not > 0."""
    for name, v in values.items():
        if not v > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {v})")


def is_icnseg_checkpoint(path: Path) -> bool:
    """True when ``path`` loads as an icnseg checkpoint (so a rerun may replace it)."""
    from icnseg.checkpoint import load_checkpoint
    from icnseg.errors import IcnsegError

    try:
        load_checkpoint(path)
    except IcnsegError:
        return False
    return True


def check_train_out(cfg) -> None:
    """Before any training: --out writable, not a folder, not an input, nothing foreign lost."""
    from icnseg.outdir import check_output_file

    inputs = [getattr(cfg, k, None) for k in ("init", "pretrained", "stage1")]
    check_output_file(cfg.out, "--out", inputs, replaceable=is_icnseg_checkpoint)


def resume_path(out: str | os.PathLike) -> Path:
    """The resume file that sits beside a checkpoint being trained."""
    out = Path(out)
    return out.with_name(out.name + ".resume.pt")


def save_resume(path: Path, epoch: int, model_state: dict, optim_state: dict, config: dict) -> None:
    """Atomically write the state needed to continue after ``epoch`` (plain tensors only)."""
    import torch

    blob = {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optim_state,
        "config": json.dumps(config, sort_keys=True),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_resume(path: Path, config: dict) -> dict[str, Any] | None:
    """Load a resume file written for the same ``config``; None when there is none."""
    import torch

    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from icnseg.checkpoint import load_failure

        raise CheckpointError(
            f"{path}: unreadable resume file ({load_failure(exc)}); delete it to restart"
        ) from exc
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a resume file of icnseg; delete it to restart")
    if blob.get("config") != json.dumps(config, sort_keys=True):
        raise CheckpointError(
            f"{path}: resume file was written with other settings; delete it or rerun with them"
        )
    return blob


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """All-points AP of one class (area under the monotone precision-recall curve)."""
    order = np.argsort(-scores, kind="stable")
    pos = positives[order].astype(bool)
    npos = int(pos.sum())
    if npos == 0:
        return float("nan")
    tp = np.cumsum(pos)
    fp = np.cumsum(~pos)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - prev) * precision))


def classification_map(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean AP over classes with at least one positive; scores and labels are [N, C]."""
    aps = [average_precision(scores[:, c], labels[:, c] > 0) for c in range(labels.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def fit(name: str, module, optim, n_items: int, cfg, config: dict, rpath: Path,
        batch_loss, log, t0: float) -> None:
    """Run the epochs of ``cfg`` not yet in the resume file; ``batch_loss(indices, rng, epoch)``.

    ``cfg`` needs epochs, lr, lr_step, lr_gamma, seed and batch_size. The state after each
    epoch goes to ``rpath``, so an interrupted run continues where it stopped, bit for bit.
    """
    from tqdm import tqdm

    start = 0
    blob = load_resume(rpath, config)
    if blob is not None:
        module.load_state_dict(blob["model"])
        optim.load_state_dict(blob["optimizer"])
        start = blob["epoch"] + 1
        log(f"resuming from {rpath} at epoch {start + 1}")
    for epoch in range(start, cfg.epochs):
        for group in optim.param_groups:
            group["lr"] = step_lr(cfg.lr, epoch, cfg.lr_step, cfg.lr_gamma)
        rng = epoch_rng(cfg.seed, epoch)
        order = rng.permutation(n_items)
        module.train()
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"{name} {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=None)
        for b in bar:
            idx = order[b : b + cfg.batch_size]
            loss = batch_loss(idx, rng, epoch)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        save_resume(rpath, epoch, module.state_dict(), optim.state_dict(), config)
        log(f"{name} epoch {epoch + 1}/{cfg.epochs} loss {total / max(seen, 1):.4f} "
            f"lr {optim.param_groups[0]['lr']:.2g} ({time.time() - t0:.0f}s)")
