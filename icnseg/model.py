"""The loaded model: classifier + ICN + what they were trained with; ``icnseg.load(MODEL)``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icnseg.checkpoint import Checkpoint, load_checkpoint
from icnseg.errors import CheckpointError, ConfigError, InputError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default.safetensors"
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision backbones expect
STD = (0.229, 0.224, 0.225)


@dataclass
class Model:
    """A trained ICN model (DESIGN.md "Python API"); torch modules in eval mode."""

    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) the model runs at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier: Any  # PRMClassifier: normalised image [B,3,H,W] -> class response maps
    icn: Any | None  # ICN: image [K,3,H,W] + PRM [K,1,H,W] -> map [K,1,H,W]; None after stage 1
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def state(self) -> dict[str, Any]:
        """Return the prefixed state dict that a checkpoint stores."""
        out = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        if self.icn is not None:
            out.update({f"icn.{k}": v for k, v in self.icn.state_dict().items()})
        return out


def build_classifier(config: dict[str, Any]):
    """Build an untrained PRM classifier from a checkpoint config."""
    from icnseg.models.prm import PRMClassifier

    return PRMClassifier(config["backbone"], len(config["classes"]))


def build_icn(config: dict[str, Any]):
    """Build an untrained ICN from a checkpoint config (None when the config has no ICN)."""
    from icnseg.models.icn import ICN

    enc = config.get("icn_encoder")
    return None if enc is None else ICN(encoder=enc)


def _load_into(module, state: dict[str, Any], path: Path, what: str) -> None:
    """Load ``state`` into ``module`` strictly; a key or shape mismatch names the file."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own.keys() & state.keys() if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs "
                f"{tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"{path}: {what} weights do not fit the architecture in its config "
            f"({'; '.join(parts)}): a checkpoint of another architecture?"
        )
    module.load_state_dict(state, strict=True)


def model_from_checkpoint(ckpt: Checkpoint) -> Model:
    """Build the modules a checkpoint describes and load its weights (eval mode)."""
    cfg = ckpt.config
    for key in ("classes", "backbone", "input_size"):
        if key not in cfg:
            raise CheckpointError(f"{ckpt.path}: config lacks '{key}' (not an icnseg checkpoint?)")
    classifier = build_classifier(cfg)
    _load_into(classifier, ckpt.sub_state("classifier"), ckpt.path, "classifier")
    icn = build_icn(cfg)
    if icn is not None:
        _load_into(icn, ckpt.sub_state("icn"), ckpt.path, "ICN")
    classifier.eval()
    if icn is not None:
        icn.eval()
    return Model(
        classes=tuple(cfg["classes"]),
        input_size=tuple(cfg["input_size"]),
        mean=tuple(cfg.get("mean", MEAN)),
        std=tuple(cfg.get("std", STD)),
        classifier=classifier,
        icn=icn,
        config=cfg,
        source=str(ckpt.path),
    )


def resolve_model_path(model: str | os.PathLike) -> Path:
    """Map MODEL (``default``, a checkpoint file or an export directory) to a path."""
    if str(model) == "default":
        return DEFAULT_CHECKPOINT
    path = Path(model)
    if not path.exists():
        raise InputError(
            f"{path}: no such model (expected a checkpoint, an export dir or 'default')"
        )
    return path


def resolve_export_dir(model: str | os.PathLike) -> Path:
    """MODEL for a runtime backend: an export directory, or 'default' (the shipped export)."""
    if str(model) == "default":
        path = ASSETS / "export"
        if not (path / "manifest.json").is_file():
            raise ConfigError(
                f"{path}: the package ships no exported default model "
                "(build it with tools/export_default.sh, or use --backend torch)"
            )
        return path
    path = resolve_model_path(model)
    if not path.is_dir():
        raise ConfigError(
            f"{path}: runtime backends need an export directory; export the checkpoint "
            f"first: icnseg export {path} --out DIR"
        )
    return path


def load(model: str | os.PathLike = "default") -> Model:
    """Load MODEL (``default`` = the embedded checkpoint, or a checkpoint file) for PyTorch."""
    path = resolve_model_path(model)
    if path.is_dir():
        raise InputError(
            f"{path}: is a directory; the torch backend needs a checkpoint file "
            "(use --backend onnxruntime for an export directory)"
        )
    return model_from_checkpoint(load_checkpoint(path))
