"""Build the torch modules a checkpoint config describes and load weights into them strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icnseg.errors import CheckpointError


def build_classifier(config: dict[str, Any]):
    """Build an untrained PRM classifier from a checkpoint config."""
    from icnseg.models.prm import PRMClassifier

    return PRMClassifier(config["backbone"], len(config["classes"]))


def build_icn(config: dict[str, Any]):
    """Build an untrained ICN from a checkpoint config (None when the config has no ICN)."""
    from icnseg.models.icn import ICN

    enc = config.get("icn_encoder")
    return None if enc is None else ICN(encoder=enc, variant=config.get("icn_variant", "full"))


def load_strict(module, state: dict[str, Any], path: Path, what: str) -> None:
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


