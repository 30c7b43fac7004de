"""Mask proposals: built-in generator and loaders for precomputed proposals."""

from typing import Any

from icnseg.proposals.loaders import load_proposals
from icnseg.proposals.types import Proposals, pack_masks, unpack_masks

__all__ = [
    "ProposalConfig", "Proposals", "generate_proposals", "load_proposals", "pack_masks",
    "unpack_masks",
]


def __getattr__(name: str) -> Any:
    """The generator on first use: its compiled kernels import numba (~0.3 s), which
    importing proposal types and loaders (most of icnseg) does not need."""
    if name in ("ProposalConfig", "generate_proposals"):
        from icnseg.proposals import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
