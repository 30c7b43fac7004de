"""Small helpers shared by the CLI modules."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """Bytes as B / kB / MB."""
    if n < 1e3:
        return f"{n} B"
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.2f} MB"
