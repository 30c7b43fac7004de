"""Jetson boards: the module name from the device tree, power mode and clocks (None elsewhere).

CUDA names every Orin GPU "Orin" and every Xavier "Xavier"; ``/proc/device-tree/model``
("NVIDIA Jetson Orin Nano Developer Kit") tells them apart.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DEVFREQ = Path("/sys/class/devfreq")


def jetson_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board model of a Jetson ("NVIDIA Jetson AGX Orin Developer Kit"), else None."""
    try:
        model = path.read_bytes().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None
    return model if "jetson" in model.lower() else None


def power_mode() -> str | None:
    """``nvpmodel -q``'s mode line ("NV Power Mode: 15W"), or None without nvpmodel."""
    if shutil.which("nvpmodel") is None:
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.stdout.splitlines() if "power mode" in ln.lower()]
    return lines[0] if lines else None


def clocks(root: Path = DEVFREQ) -> dict[str, dict[str, int]]:
    """Current/max frequency in MHz of each devfreq device (GPU, EMC, DLA on a Jetson)."""
    out: dict[str, dict[str, int]] = {}
    for dev in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            cur, top = (int((dev / f).read_text().strip()) for f in ("cur_freq", "max_freq"))
        except (OSError, ValueError):
            continue
        out[dev.name] = {"cur_mhz": cur // 1_000_000, "max_mhz": top // 1_000_000}
    return out
