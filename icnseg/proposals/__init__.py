"""Mask proposals: built-in generator and loaders for precomputed proposals."""
