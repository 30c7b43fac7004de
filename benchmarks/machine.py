"""What a benchmark ran on: machine, GPU, driver, library versions, git revision, memory."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from icnseg.jetson import jetson_model

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("icnseg", "numpy", "opencv-python-headless", "onnx", "onnxruntime",
             "onnxruntime-gpu", "torch", "tensorrt", "tensorrt-rtx", "pycuda")


def _cpu_name() -> str:
    """The CPU model string (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str]) -> str | None:
    """stdout of a short command, or None if it fails."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def gpus() -> list[dict[str, str]]:
    """Name, driver and memory of each NVIDIA GPU (nvidia-smi), empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    rows = [r.split(", ") for r in (out or "").splitlines() if r.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) == 3]


def git_revision() -> str | None:
    """HEAD of the source checkout, with '+dirty' when there are uncommitted changes."""
    rev = _run(["git", "rev-parse", "--short=12", "HEAD"])
    if rev is None:
        return None
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return rev + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Installed versions of the libraries that change timings."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict[str, object]:
    """Everything a reader needs to reproduce or discount a timing."""
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        # other work on the machine while measuring (1, 5, 15 min averages)
        "loadavg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "gpus": gpus(),
        "jetson": jetson_model(),  # the board (CUDA only says "Orin"), None elsewhere
        "libraries": versions(),
        "git": git_revision(),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec (getrusage's ru_maxrss
    carries the parent's peak over fork + exec, so a child would report its parent's).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024
