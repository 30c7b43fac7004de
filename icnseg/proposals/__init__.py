"""Mask proposals: built-in generator and loaders for precomputed proposals."""

from icnseg.proposals.generate import ProposalConfig, generate_proposals
from icnseg.proposals.loaders import load_proposals
from icnseg.proposals.types import Proposals, pack_masks, unpack_masks

__all__ = [
    "ProposalConfig", "Proposals", "generate_proposals", "load_proposals", "pack_masks",
    "unpack_masks",
]
