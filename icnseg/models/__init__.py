"""Backbones, the PRM classifier and peak finding, and the ICN."""
