"""Output agreement between benchmarked backends: no time is reported for wrong outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from icnseg.compare import TOLERANCES, Result, Tolerance, compare_runs
from icnseg.errors import IcnsegError


class BenchmarkError(IcnsegError):
    """Benchmarked backends disagree, so no timing is reported."""


def check_agreement(reference: str, results: Mapping[str, Sequence[Result]],
                    image_names: Sequence[str],
                    tol: Tolerance | Mapping[str, Tolerance] = TOLERANCES["fp32"]) -> None:
    """BenchmarkError listing every disagreement of any backend with ``reference``."""
    problems = compare_runs(results, reference, image_names, tol)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BenchmarkError(f"backends disagree, no timings reported:\n  {shown}{more}")
