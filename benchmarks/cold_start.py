"""Cold start of one backend in a fresh process: import -> load -> first result, peak memory.

    python -m icnseg.benchmarks.cold_start MODEL BACKEND DEVICE IMAGE

prints one JSON line: import_s (icnseg and the backend's libraries), load_s, first_s (first
image, including proposal generation), total_s, steady_ms (median of 3 more images),
peak_rss_mb, and gpu_memory_mb where a GPU was used (torch's peak, or the process's use
reported by nvidia-smi after the run, which for ONNX Runtime's arena is its peak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from icnseg.errors import IcnsegError


def _gpu_memory_mb() -> float | None:
    """This process's GPU memory in MiB according to nvidia-smi, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, mem = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(mem)
    return None


def measure_here(model: str, backend: str, device: str, image_path: str) -> dict[str, Any]:
    """Run the cold start in this process (call it in a fresh one)."""
    t0 = time.perf_counter()
    import importlib

    from icnseg.benchmarks.bench import BenchConfig, load_inputs, load_runners

    library = {"torch": "torch", "baseline": "torch", "onnxruntime": "onnxruntime"}
    if backend in library:  # charged to import time, as a user's process pays it
        importlib.import_module(library[backend])
    t1 = time.perf_counter()
    import contextlib

    with contextlib.ExitStack() as stack:
        cfg = BenchConfig(model=model, backends=() if backend == "baseline" else (backend,),
                          baseline=backend == "baseline", device=device, cold=False)
        loaded = load_runners(cfg, stack)
        runner = next(iter(loaded.runners.values()))
        t2 = time.perf_counter()
        item = load_inputs([image_path], loaded.cfg.match_max_side)[0]
        runner.segment(item["image"], item["proposals"])
        t3 = time.perf_counter()
        steady = []
        for _ in range(3):
            s = time.perf_counter()
            runner.segment(item["image"], item["proposals"])
            steady.append(time.perf_counter() - s)
    from icnseg.benchmarks.machine import peak_rss_mb

    out = {"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2, "total_s": t3 - t0,
           "steady_ms": sorted(steady)[1] * 1e3, "peak_rss_mb": peak_rss_mb()}
    if device != "cpu":
        out["gpu_memory_mb"] = _gpu_memory_mb()
    return out


def measure_cold(model: str, backend: str, device: str, image_path: str,
                 timeout: float = 600) -> dict[str, Any]:
    """Cold start of ``backend`` measured in a fresh Python process."""
    cmd = [sys.executable, "-m", "icnseg.benchmarks.cold_start", model, backend, device,
           image_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise IcnsegError(f"cold-start run of {backend} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the subprocess."""
    model, backend, device, image = argv if argv is not None else sys.argv[1:]
    print(json.dumps(measure_here(model, backend, device, image)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
