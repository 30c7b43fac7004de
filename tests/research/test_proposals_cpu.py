"""The proposal stage profiler: per-stage ms that add up, and the timers removed after."""

from __future__ import annotations

import icnseg.proposals.generate as gen
from icnseg.proposals.types import Proposals
from research.proposals_cpu import stage_times


def test_stage_times_add_up_and_restore_the_module() -> None:
    before = (gen._oversegment, gen.group_runs, Proposals.__dict__["from_membership"])
    out = stage_times(sizes=(48,), n=1, repeat=1)
    row = out["48"]["after"]
    assert set(row) == {"total_ms", "stages_ms"}
    stages = row["stages_ms"]
    assert stages["_oversegment"] > 0 and stages["group_runs"] > 0
    assert abs(sum(stages.values()) - row["total_ms"]) < 1e-6  # "other" is the remainder
    assert (gen._oversegment, gen.group_runs, Proposals.__dict__["from_membership"]) == before
