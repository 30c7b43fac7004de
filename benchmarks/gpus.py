"""Peak compute and memory bandwidth of known NVIDIA GPUs (for the roofline fractions)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from icnseg.jetson import jetson_model


@dataclass(frozen=True)
class GpuSpec:
    """Peak FP32 (CUDA cores) and dense FP16 tensor-core TFLOPS, DRAM bandwidth in GB/s."""

    name: str
    pattern: str
    fp32_tflops: float
    fp16_tflops: float
    bandwidth_gbs: float


# Matched in order against the lower-cased CUDA device name (or a Jetson module name). FP16 =
# dense tensor cores ("with sparsity" figures halved). Jetson: FP32 = cores x 2 x max GPU clock,
# Orin FP16 = SMs x 1024 FMA x 2 x clock (= sparse INT8 GPU TOPS / 4), Xavier FP16 = TCs x 64 FMA
# x 2 x clock, from the data sheets' cores/SMs or TCs/clock/GB/s: Orin Nano 8GB 1024/8/625 MHz/68
# (Super 1020 MHz/102), Orin NX 16GB 1024/8/918 MHz/102.4, AGX Orin 64GB 2048/16/1.3 GHz/204.8,
# Xavier NX 384/48/1.1 GHz/51.2, AGX Xavier 512/64/1.377 GHz/136.5. CUDA calls every Orin "Orin",
# every Xavier "Xavier": find_gpu matches the board's /proc/device-tree/model instead.
GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H200", r"\bh200\b", 67.0, 989.5, 4800.0),  # H200 datasheet (SXM): 1,979 sparse
    GpuSpec("H100 PCIe", r"\bh100\b.*pcie", 51.0, 756.5, 2000.0),  # H100 datasheet: 1,513 sp.
    GpuSpec("H100 SXM", r"\bh100\b", 67.0, 989.5, 3350.0),  # H100 datasheet (SXM5): 1,979 sp.
    GpuSpec("A100 80GB SXM", r"\ba100\b.*sxm.*80 ?gb", 19.5, 312.0, 2039.0),  # A100 datasheet
    GpuSpec("A100 80GB PCIe", r"\ba100\b.*80 ?gb", 19.5, 312.0, 1935.0),  # A100 datasheet
    GpuSpec("A100 40GB", r"\ba100\b", 19.5, 312.0, 1555.0),  # A100 datasheet (SXM4 and PCIe)
    GpuSpec("L40S", r"\bl40s\b", 91.6, 362.05, 864.0),  # L40S datasheet: 733 sparse
    GpuSpec("L4", r"\bl4\b", 30.3, 121.0, 300.0),  # L4 datasheet: FP16 TC 242 sparse
    GpuSpec("A10", r"\ba10\b", 31.2, 125.0, 600.0),  # A10 datasheet: 250 sparse
    GpuSpec("T4", r"\bt4\b", 8.1, 65.0, 320.0),  # T4 datasheet: mixed FP16/FP32 65
    GpuSpec("RTX 4090", r"rtx 4090$", 82.6, 165.2, 1008.0),  # Ada whitepaper (FP32 accumulate)
    GpuSpec("Jetson Orin Nano 8GB Super", r"orin nano.*super", 2.09, 16.7, 102.0),  # dev kit DS
    GpuSpec("Jetson Orin Nano 8GB", r"orin nano", 1.28, 10.2, 68.0),  # Orin Nano series DS
    GpuSpec("Jetson Orin NX 16GB", r"orin nx", 1.88, 15.0, 102.4),  # Orin NX series data sheet
    GpuSpec("Jetson AGX Orin 64GB", r"\borin\b", 5.32, 42.6, 204.8),  # AGX Orin tech brief 1.2
    GpuSpec("Jetson Xavier NX", r"xavier nx", 0.845, 6.76, 51.2),  # Xavier NX DS DA-09366
    GpuSpec("Jetson AGX Xavier", r"\bxavier\b", 1.41, 11.3, 136.5),  # AGX Xavier data sheet
)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.lower()).strip()


def find_gpu(name: str, board: str | None = None) -> GpuSpec | None:
    """The GPUS row for a CUDA device name ("NVIDIA H100 80GB HBM3", "Orin"), else None.

    A Jetson's CUDA name ("Orin", "Xavier") is replaced by its board model (``board``, read
    from the device tree when None), so an Orin Nano is not taken for an AGX Orin.
    """
    norm = _norm(name)
    if re.search(r"\b(orin|xavier)\b", norm):
        board = board if board is not None else jetson_model()
        if board and re.search(r"\b(orin|xavier)\b", _norm(board)):
            norm = _norm(board)
    return next((g for g in GPUS if re.search(g.pattern, norm)), None)
