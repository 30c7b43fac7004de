"""TensorRT optimisation profiles of exported graphs: which axes are dynamic, their ranges.

Read by ``build-engine`` (export) and by ONNX Runtime's TensorRT provider (runtime).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from icnseg.artifacts.engine_cache import Shape
from icnseg.errors import ConfigError, ExportError

K_OPT = 8  # default opt K of the icn profile
Profiles = dict[str, tuple[Shape, Shape, Shape]]


def default_k_opt(k_max: int) -> int:
    """The opt K of a profile: a typical number of peaks, at most K_max."""
    return max(1, min(int(k_max), K_OPT))


def graph_input_shapes(manifest: Mapping[str, Any], role: str) -> dict[str, Shape]:
    """Input shapes of an exported graph from its manifest, -1 for dynamic axes."""
    h, w = (int(v) for v in manifest["input_size"])
    if role == "prm":
        return {"image": (1, 3, h, w)}
    if role == "icn":
        hh, ww = (-1, -1) if manifest.get("dynamic_size") else (h, w)
        return {"image": (1, 3, hh, ww), "prm": (-1, 1, hh, ww)}
    raise ConfigError(f"unknown graph role {role!r} (prm or icn)")


def profile_shapes(inputs: Mapping[str, Sequence[int]], k_max: int,
                   input_size: Sequence[int], k_opt: int | None = None,
                   size_range: tuple[Sequence[int], Sequence[int]] | None = None) -> Profiles:
    """(min, opt, max) per input with a dynamic axis: axis 0 = K, axes 2/3 = H/W."""
    k_opt = default_k_opt(k_max) if k_opt is None else int(k_opt)
    if not 1 <= k_opt <= k_max:
        raise ConfigError(f"opt K {k_opt} must lie in 1..K_max ({k_max})")
    h, w = (int(v) for v in input_size)
    lo, hi = size_range if size_range is not None else ((h, w), (h, w))
    if not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]):
        raise ConfigError(f"size range {tuple(lo)}..{tuple(hi)} must contain the input size "
                          f"{(h, w)}")
    out: Profiles = {}
    for name, shape in inputs.items():
        shape = tuple(int(d) for d in shape)
        if all(d >= 0 for d in shape):
            continue
        mins, opts, maxs = list(shape), list(shape), list(shape)
        for axis, d in enumerate(shape):
            if d >= 0:
                continue
            if axis == 0:
                mins[axis], opts[axis], maxs[axis] = 1, k_opt, int(k_max)
            elif axis in (2, 3) and len(shape) == 4:
                i = axis - 2
                mins[axis], opts[axis], maxs[axis] = int(lo[i]), (h, w)[i], int(hi[i])
            else:
                raise ExportError(f"input {name} {shape}: no profile rule for dynamic axis {axis}")
        out[name] = (tuple(mins), tuple(opts), tuple(maxs))
    return out
