"""The schema of a checkpoint's config (the JSON beside its tensors), checked before building.

Errors are CheckpointError ``"{path}: key 'k': ..."``; the tensors themselves are checked by
``models.build.load_strict`` (names and shapes against the architecture the config names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icnseg.artifacts.manifest_schema import (
    MAX_INPUT_SIDE,
    bad_key,
    check_classes,
    check_floats,
)
from icnseg.errors import CheckpointError, ConfigError

BACKBONES = ("tiny", "vgg16", "resnet50")  # models.backbones.BACKBONES (no torch import here)
ICN_ENCODERS = ("vgg16", "tiny")
ICN_VARIANTS = ("full", "no_fusion", "no_prm")  # models.icn.VARIANTS (no torch import here)
_FIX = {"fix": "retrain or re-save the checkpoint", "error": CheckpointError}


def validate_checkpoint_config(path: str | Path, cfg: Any) -> None:
    """CheckpointError naming ``path`` and the key for any missing or out-of-range value."""
    path = Path(path)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: config is not a JSON object")
    for key in ("classes", "backbone", "input_size"):
        if key not in cfg:
            raise CheckpointError(f"{path}: config lacks '{key}' (not an icnseg checkpoint?)")
    check_classes(path, cfg["classes"], **_FIX)
    if cfg["backbone"] not in BACKBONES:
        raise bad_key(path, "backbone", f"{json.dumps(cfg['backbone'])} is not one of "
                      f"{', '.join(BACKBONES)}", **_FIX)
    if cfg.get("icn_encoder") not in (None, *ICN_ENCODERS):
        raise bad_key(path, "icn_encoder", f"{json.dumps(cfg['icn_encoder'])} is not one of "
                      f"{', '.join(ICN_ENCODERS)}", **_FIX)
    if cfg.get("icn_variant", "full") not in ICN_VARIANTS:
        raise bad_key(path, "icn_variant", f"{json.dumps(cfg['icn_variant'])} is not one of "
                      f"{', '.join(ICN_VARIANTS)}", **_FIX)
    size = cfg["input_size"]
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool)
                       and 16 <= s <= MAX_INPUT_SIDE and s % 16 == 0 for s in size)):
        raise bad_key(path, "input_size", f"{json.dumps(size)}: must be [H, W], each a "
                      f"multiple of 16 in [16, {MAX_INPUT_SIDE}]", **_FIX)
    for key, positive in (("mean", False), ("std", True)):
        if key in cfg:
            check_floats(path, cfg, key, 3, positive, **_FIX)
    from icnseg.settings import config_from_dict

    try:
        config_from_dict(cfg)
    except (ConfigError, TypeError, ValueError) as exc:
        raise bad_key(path, "segment", str(exc), **_FIX) from exc
