"""`icnseg run --proposal-workers N`: proposals made in worker processes, same outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from icnseg.data.synth import render_sample, sample_rng

ORT = ["--backend", "onnxruntime"]


@pytest.fixture()
def inputs(tmp_path):
    """A 4-frame 128-px video and a folder with two images and one unreadable file."""
    d = tmp_path / "in"
    d.mkdir()
    writer = cv2.VideoWriter(str(d / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0,
                             (128, 128))
    for i in range(4):
        writer.write(cv2.cvtColor(render_sample(sample_rng(11, i), 128)[0], cv2.COLOR_RGB2BGR))
    writer.release()
    for i in range(2):
        cv2.imwrite(str(d / f"img{i}.png"),
                    cv2.cvtColor(render_sample(sample_rng(12, i), 160)[0], cv2.COLOR_RGB2BGR))
    (d / "broken.png").write_bytes(b"not a png")
    return d


def _records(out):
    return {p.relative_to(out).as_posix(): json.loads(p.read_text())["instances"]
            for p in sorted(out.rglob("*.json")) if p.name != "run.json"}


@pytest.mark.parametrize("prefetch", ["0", "2"])
def test_workers_write_what_inline_writes(inputs, tmp_path, run_cli, prefetch):
    pytest.importorskip("onnxruntime")
    ref, out = tmp_path / "ref", tmp_path / "workers"
    rc, _, errors = run_cli(["run", "default", str(inputs), "--out", str(ref), *ORT])
    assert rc == 1 and len(errors) == 1 and "broken.png" in errors[0]
    rc, _, errors2 = run_cli(["run", "default", str(inputs), "--out", str(out), *ORT,
                              "--proposal-workers", "2", "--prefetch", prefetch])
    assert rc == 1 and errors2 == errors  # the bad file fails alone, with the same line
    want, got = _records(ref), _records(out)
    assert len(want) == 6 and any(want.values())  # 4 frames + 2 images, some instances
    assert got == want
    assert np.array_equal(cv2.imread(str(ref / "img0.png")), cv2.imread(str(out / "img0.png")))


def test_workers_need_builtin_proposals_and_a_count(inputs, tmp_path, capsys, run_cli):
    pytest.importorskip("onnxruntime")
    rc, _, errors = run_cli(["run", "default", str(inputs / "img0.png"), "--out",
                             str(tmp_path / "a"), *ORT, "--proposal-workers", "1",
                             "--proposals", str(tmp_path)])
    assert rc != 0 and "--proposal-workers" in " ".join(errors)
    with pytest.raises(SystemExit) as exit_:  # the bound (icnseg.cli.bounds): argparse, exit 2
        run_cli(["run", "default", str(inputs / "img0.png"), "--out", str(tmp_path / "b"),
                 *ORT, "--proposal-workers", "-1"])
    assert exit_.value.code == 2
    assert "--proposal-workers: -1 is outside [0, 64]" in capsys.readouterr().err
