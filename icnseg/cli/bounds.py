"""The one table of bounds for every numeric command-line option, with argparse types for it.

A value outside its bound is refused by argparse (exit 2, one line naming the flag); the
bound is appended to the flag's ``--help``. Bounds keep a typo from allocating terabytes or
looping for days; they are generous for real use.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """``lo <= value <= hi`` (``lo < value`` when ``lo_open``) of type ``kind``."""

    kind: type
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def text(self) -> str:
        """The range as ``--help`` shows it, e.g. ``[1, 10000]`` or ``(0, 10]``."""
        def fmt(v: float) -> str:
            return f"{v:g}" if self.kind is float else str(int(v))
        return (f"{'(' if self.lo_open else '['}{fmt(self.lo)}, "
                f"{fmt(self.hi)}{')' if self.hi_open else ']'}")

    def check(self, value: float) -> bool:
        """True when ``value`` lies in the range (NaN never does)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below


# dest name (as argparse stores it) -> bound; shared by run/demo, export, data synth, bench,
# build-engine and the train flags generated from the config dataclasses.
BOUNDS: dict[str, Bound] = {
    # run / demo
    "iterations": Bound(int, 0, 50),
    "threshold": Bound(float, 0.0, 1.0),
    "nms_iou": Bound(float, 0.0, 1.0, lo_open=True),
    "frames": Bound(int, 1, 10_000_000),
    "every": Bound(int, 1, 100_000),
    "prefetch": Bound(int, 0, 64),
    "proposal_workers": Bound(int, 0, 64),
    "match_max_side": Bound(int, 32, 16384),
    # export
    "size": Bound(int, 32, 4096),
    "peaks": Bound(int, 1, 256),
    "opset": Bound(int, 13, 21),
    "unroll": Bound(int, 1, 50),
    # data synth (its --size shares "size")
    "n": Bound(int, 1, 1_000_000),
    "seed": Bound(int, 0, 2**32 - 1),
    "val_fraction": Bound(float, 0.0, 1.0, hi_open=True),
    # bench
    "iters": Bound(int, 1, 10_000),
    "warmup": Bound(int, 0, 1_000),
    "streams": Bound(int, 0, 16),
    "budget_frames": Bound(int, 0, 1_000),
    "threads": Bound(int, 1, 256),
    # run --ray (its --batch-size shares the train bound)
    "gpus_per_worker": Bound(float, 0.0, 64.0),
    "cpus_per_worker": Bound(float, 0.0, 256.0, lo_open=True),
    # serve
    "http_port": Bound(int, 1, 65535),
    "grpc_port": Bound(int, 1, 65535),
    "metrics_port": Bound(int, 1, 65535),
    "max_batch": Bound(int, 1, 1024),
    "batch_delay_us": Bound(int, 0, 10_000_000),
    # build-engine
    "dla": Bound(int, 0, 7),
    "workspace": Bound(int, 1, 1 << 20),
    # train (flags generated from Stage1Config / Stage2Config)
    "input_size": Bound(int, 32, 2048),
    "epochs": Bound(int, 1, 10_000),
    "lr": Bound(float, 0.0, 10.0, lo_open=True),
    "lr_step": Bound(int, 1, 10_000),
    "lr_gamma": Bound(float, 0.0, 1.0, lo_open=True),
    "batch_size": Bound(int, 1, 4096),
    "crop_scale": Bound(float, 0.0, 1.0, lo_open=True),
    "color_jitter": Bound(float, 0.0, 1.0),
    "window": Bound(int, 1, 31),
    "upsample": Bound(int, 1, 16),
    "workers": Bound(int, 0, 256),
    "restarts": Bound(int, 1, 100),
    "k": Bound(int, 1, 100),
    "feedback": Bound(float, 0.0, 1.0),
    "feedback_after": Bound(int, 0, 10_000),
    "rough_cues": Bound(float, 0.0, 1.0),
    "unrolled_gamma": Bound(float, 0.0, 1.0, lo_open=True),
    "pseudo_passes": Bound(int, 1, 50),
    "default_iterations": Bound(int, 1, 50),
    "default_score_threshold": Bound(float, 0.0, 1.0),
    "pseudo_blur": Bound(float, 0.0, 100.0),
    "pseudo_blob_threshold": Bound(float, 0.0, 1.0),
    "peak_relative": Bound(float, 0.0, 1.0),
    "peak_min_response": Bound(float, 0.0, 1e6),
}
# the train seed is any non-negative 32-bit integer as well; synth --size has its own floor
SYNTH_SIZE = Bound(int, 32, 4096)


def bounded(name: str, kind: type | None = None, bound: Bound | None = None) -> Callable:
    """An argparse ``type`` that parses ``kind`` and refuses values outside ``BOUNDS[name]``."""
    b = bound or BOUNDS[name]
    parse = kind or b.kind

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if parse is int else 'a number'}") from None
        if not b.check(value):
            raise argparse.ArgumentTypeError(f"{text} is outside {b.text()}")
        return value

    convert.__name__ = parse.__name__  # argparse names the type in some messages
    return convert


def help_bound(name: str, bound: Bound | None = None) -> str:
    """`` range: [lo, hi]`` for a flag's help text."""
    return f" (range: {(bound or BOUNDS[name]).text()})"


def add_bounded(p: argparse.ArgumentParser, flag: str, help: str, bound: Bound | None = None,
                **kw) -> argparse.Action:
    """``p.add_argument(flag, type=bounded(...), help=help + range)`` for a numeric flag."""
    name = kw.get("dest") or flag.lstrip("-").replace("-", "_")
    b = bound or BOUNDS[name]
    return p.add_argument(flag, type=bounded(name, bound=b), help=help + help_bound(name, b),
                          **kw)
