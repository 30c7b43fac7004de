"""Small helpers shared by the CLI modules (cli, cli_engine, cli_bench)."""

from __future__ import annotations

import importlib.util


def torch_available() -> bool:
    """True if PyTorch can be imported (decides default backends)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def human_bytes(n: int) -> str:
    """Bytes as B / kB / MB."""
    if n < 1e3:
        return f"{n} B"
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.2f} MB"
