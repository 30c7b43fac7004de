"""Several exports side by side: runner names, per-precision tolerances, and the set-wise
instance agreement of quantised runs (checked against a brute-force count)."""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import numpy as np
import pytest

from icnseg.benchmarks.bench import BenchConfig, agreement_tolerances, export_runner_name
from icnseg.compare import TOLERANCES, compare_runs, instance_agreement
from icnseg.instance import Instance
from icnseg.segmenter import Stages


def _inst(cls: str, score: float, y0: int, y1: int) -> Instance:
    mask = np.zeros((20, 20), bool)
    mask[y0:y1, 2:12] = True
    return Instance(cls, 0, score, mask)


def _brute(ref, other, tol) -> int:
    """Largest one-to-one matching under the tolerance, by trying every assignment."""
    def ok(a, b):
        inter = (a.mask & b.mask).sum()
        iou = inter / (a.mask | b.mask).sum()
        return (a.class_name == b.class_name and abs(a.score - b.score) <= tol.score
                and iou >= tol.mask_iou)

    best = 0  # each reference instance picks a distinct counterpart or none
    for pick in itertools.product([None, *range(len(other))], repeat=len(ref)):
        chosen = [j for j in pick if j is not None]
        if len(chosen) == len(set(chosen)):
            best = max(best, sum(ok(a, other[j]) for a, j in zip(ref, pick, strict=True)
                                 if j is not None))
    return best


def test_instance_agreement_matches_brute_force():
    tol = TOLERANCES["int8"]
    rng = np.random.default_rng(0)
    for _ in range(30):
        ref = [_inst(str(rng.integers(2)), float(rng.random()), int(y), int(y) + 6)
               for y in rng.integers(0, 12, 3)]
        other = [_inst(a.class_name, a.score + float(rng.normal(0, 0.08)),
                       *(lambda y: (y, y + 6))(int(np.argmax(a.mask.any(1))) + int(
                           rng.integers(-1, 2)))) for a in ref if rng.random() < 0.8]
        n, ious = instance_agreement(ref, other, tol)
        assert n == len(ious) == _brute(ref, other, tol)


def test_compare_runs_judges_quantised_instances_as_a_set():
    stages = Stages(np.zeros((20, 20, 3), np.uint8), np.zeros(2), np.zeros((0, 4)),
                    np.zeros((0, 20, 20)))
    ref = [([_inst("a", 0.9, 0, 6), _inst("b", 0.5, 10, 16)], stages)] * 5
    lost_one = [([_inst("a", 0.88, 0, 6)], stages)] * 5  # 5 of 10 instances agree
    runs = {"fp32": ref, "int8": lost_one}
    names = [f"im{i}" for i in range(5)]
    loose = dict.fromkeys(runs, TOLERANCES["int8"])
    problems = compare_runs(runs, "fp32", names, loose)
    assert problems == ["int8 vs fp32: 5 of 10 instances agree (class, score within 0.1, "
                        "IoU >= 0.8), fewer than 90%"]
    assert compare_runs({"fp32": ref, "int8": ref}, "fp32", names, loose) == []
    strict = compare_runs(runs, "fp32", names, TOLERANCES["fp32"])  # one-to-one per image
    assert len(strict) == 5 and "1 instances instead of 2" in strict[0]


def _runner(precision: str, path: str):
    return types.SimpleNamespace(model=types.SimpleNamespace(precision=precision,
                                                             path=Path(path)))


def test_runner_names_and_tolerances_follow_the_exports():
    runners = {}
    for prec, path in (("fp32", "a/e32"), ("int8", "b/e8"), ("int8", "c/e8cpu")):
        model = _runner(prec, path).model
        runners[export_runner_name("onnxruntime", model, runners)] = _runner(prec, path)
    assert list(runners) == ["onnxruntime[fp32]", "onnxruntime[int8]",
                             "onnxruntime[int8:e8cpu]"]
    ref, tol = agreement_tolerances(runners)
    assert ref == "onnxruntime[fp32]"
    assert tol["onnxruntime[int8:e8cpu]"] is TOLERANCES["int8"]
    assert tol["onnxruntime[fp32]"] is TOLERANCES["fp32"]


def test_bench_config_takes_one_or_several_exports():
    assert BenchConfig(backends=("onnxruntime",), export="d").export == ("d",)
    assert BenchConfig(backends=("onnxruntime",), export=("a", "b")).export == ("a", "b")
    with pytest.raises(Exception, match="nothing to benchmark"):
        BenchConfig(backends=())


def test_bench_threads_bound_and_check(capsys):
    from icnseg.cli.main import main

    assert BenchConfig(backends=("onnxruntime",), threads=1).threads == 1
    with pytest.raises(Exception, match="--threads must be >= 1"):
        BenchConfig(backends=("onnxruntime",), threads=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "default", "--threads", "0"])
    assert exit_info.value.code == 2
    assert "--threads: 0 is outside [1, 256]" in capsys.readouterr().err
