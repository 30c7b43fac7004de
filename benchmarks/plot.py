"""PNG of an ``icnseg bench`` result: per-stage latency per backend (matplotlib, optional)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icnseg.errors import BackendUnavailable
from icnseg.fileio import atomic_path
from icnseg.segmenter import STAGES


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or say which extra brings it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailable("--plot needs matplotlib: pip install 'icnseg[plot]'") from exc
    return plt


def plot_stages(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Stacked horizontal bars of mean ms per stage, one bar per backend, e2e ± std marked;
    written atomically to ``path`` (PNG)."""
    plt = _pyplot()
    backends = result["backends"]
    names = list(backends)
    stages = [s for s in STAGES if any(s in backends[n]["stages_ms"] for n in names)]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.6 * len(names)), dpi=120)
    left = [0.0] * len(names)
    for i, stage in enumerate(stages):
        widths = [backends[n]["stages_ms"].get(stage, {}).get("mean", 0.0) for n in names]
        ax.barh(names, widths, left=left, color=cmap(i % 10), label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    e2e = [backends[n]["e2e_ms"] for n in names]
    ax.errorbar([e["mean"] for e in e2e], names, xerr=[e.get("std", 0.0) for e in e2e],
                fmt="k|", capsize=4, label="e2e mean ± std")
    c, m = result["config"], result["machine"]
    gpu = ", ".join(g["name"] for g in m["gpus"]) or "no GPU"
    ax.set_xlabel("ms per image (mean)")
    ax.set_title(f"icnseg bench: {c['model']} {c['input_size'][0]}x{c['input_size'][1]}, "
                 f"{m['cpu']} ({m['cores']} cores), {gpu}", fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=min(len(stages) + 1, 5), loc="upper center",
              bbox_to_anchor=(0.5, -0.25 - 0.05 * len(names)), frameon=False)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
