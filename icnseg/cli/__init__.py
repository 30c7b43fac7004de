"""The `icnseg` command line: argument parsing only; every command calls library functions."""

from __future__ import annotations

from icnseg.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
