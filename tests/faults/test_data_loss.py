"""The data-loss cases of issue 14, each refused or repaired, and kill -9 during runs.

Outputs are compared with what a user sees: the files under --out, their bytes, and
whether each JSON parses / each PNG ends with its IEND chunk (checked by hand here, not with
icnseg's own ``is_whole``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_corpus import write_video

from icnseg.cli import main
from icnseg.loader import ASSETS

ORT = ["--backend", "onnxruntime"]
EXPORT = str(ASSETS / "export")
IEND = b"IEND\xaeB`\x82"


def _images(folder: Path, n: int) -> Path:
    """``n`` copies of the sample images under distinct names."""
    folder.mkdir(parents=True)
    samples = sorted((ASSETS / "samples").glob("*.jpg"))
    for i in range(n):
        shutil.copy(samples[i % len(samples)], folder / f"img{i:02d}.jpg")
    return folder


def _visible(out: Path) -> list[str]:
    """The results in ``out`` (its one run.json aside: tests/cli/test_run_file.py)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and str(p.relative_to(out))
                  != "run.json")


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if p.name != ".icnseg-output")


def _whole(path: Path) -> bool:
    if path.suffix == ".json":
        json.loads(path.read_text())
        return True
    if path.suffix == ".png":
        return path.read_bytes().endswith(IEND)
    return path.stat().st_size > 0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_into_its_own_input_folder_is_refused(tmp_path, capsys):
    imgs = _images(tmp_path / "imgs", 2)
    (imgs / "snap.json").write_text('{"mine": true}\n')
    before = {p.name: _sha(p) for p in imgs.iterdir()}
    assert main(["run", "default", str(imgs), "--out", str(imgs), *ORT]) == 1
    assert "input folder" in capsys.readouterr().err
    assert {p.name: _sha(p) for p in imgs.iterdir()} == before


def test_rerun_replaces_the_earlier_run_instead_of_mixing(tmp_path):
    imgs = _images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    assert main(["run", EXPORT, str(imgs), "--out", str(out), *ORT]) == 0
    assert len(_visible(out)) == 6
    assert main(["run", EXPORT, str(imgs / "img01.jpg"), "--out", str(out), *ORT]) == 0
    assert _visible(out) == ["img01.json", "img01.png"] and (out / "run.json").is_file()


def test_foreign_file_needs_force_and_is_kept(tmp_path, capsys):
    imgs = _images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["run", EXPORT, str(imgs), "--out", str(out), *ORT]) == 1
    assert "--force" in capsys.readouterr().err and _visible(out) == ["notes.txt"]
    assert main(["run", EXPORT, str(imgs), "--out", str(out), *ORT, "--force"]) == 0
    assert _visible(out) == ["img00.json", "img00.png", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_keeps_whole_results_and_redoes_broken_ones(tmp_path, capsys):
    imgs = _images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    assert main(["run", EXPORT, str(imgs / "img00.jpg"), str(imgs / "img01.jpg"), "--out",
                 str(out), *ORT]) == 0
    kept = _sha(out / "img00.png"), (out / "img00.png").stat().st_mtime_ns
    broken = (out / "img01.png").read_bytes()
    (out / "img01.png").write_bytes(broken[: len(broken) // 2])  # as if cut by a crash
    capsys.readouterr()
    assert main(["run", EXPORT, str(imgs), "--out", str(out), *ORT, "--resume"]) == 0
    assert "2 image(s) segmented (1 kept from the earlier run)" in capsys.readouterr().out
    assert (_sha(out / "img00.png"), (out / "img00.png").stat().st_mtime_ns) == kept
    assert all(_whole(out / n) for n in _visible(out)) and len(_visible(out)) == 6


def test_demo_twice_into_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *ORT]) == 0
    assert main(["demo", *ORT]) == 0
    assert len(_visible(tmp_path / "icnseg-demo")) == 2 * len(list((ASSETS / "samples")
                                                                   .glob("*.jpg")))


def test_eval_of_another_split_keeps_the_val_metrics(tmp_path, assets):
    pred = tmp_path / "pred"
    shutil.copytree(assets.pred, pred)
    assert main(["eval", str(pred), "--gt", str(assets.dataset)]) == 0
    val = _sha(pred / "metrics.json")
    assert main(["eval", str(pred), "--gt", str(assets.dataset), "--split", "train"]) == 0
    assert _sha(pred / "metrics.json") == val
    assert json.loads((pred / "metrics-train.json").read_text())["num_images"] > 0
    # the run's folder still counts as icnseg's own: a rerun into it is not refused
    assert main(["run", EXPORT, str(assets.dataset / "JPEGImages"), "--out", str(pred),
                 *ORT]) == 0


# ---- kill -9 ---------------------------------------------------------------------------------

def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    code = "import sys; from icnseg.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (it must not have finished by then)."""
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()}"
        assert time.monotonic() - t0 < timeout, "no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_during_an_image_run_then_rerun(tmp_path):
    imgs = _images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    args = ["run", EXPORT, str(imgs), "--out", str(out), *ORT]
    proc = _start(args, tmp_path)
    _kill_when(proc, lambda: len(list(out.glob("*.png"))) >= 2)
    assert all(_whole(out / n) for n in _visible(out))  # every visible file is whole
    assert len(_visible(out)) < 12
    assert main([*args, "--resume"]) == 0
    assert len(_visible(out)) == 12 and all(_whole(out / n) for n in _visible(out))
    assert _hidden(out) == []  # the killed run's temp files were cleaned


def test_kill_9_during_a_video_run_then_shorter_rerun(tmp_path):
    video = write_video(tmp_path / "clip.avi", 200)
    out = tmp_path / "out"
    proc = _start(["run", EXPORT, str(video), "--out", str(out), *ORT], tmp_path)
    _kill_when(proc, lambda: len(list((out / "clip").glob("*.json"))) >= 8)
    assert all(_whole(out / n) for n in _visible(out))
    assert main(["run", EXPORT, str(video), "--out", str(out), *ORT, "--frames", "5"]) == 0
    assert _visible(out) == ["clip.mp4", *[f"clip/{i:06d}.json" for i in range(5)]]
    assert _hidden(out) == []


@pytest.mark.parametrize("every", [1, 3])
def test_rerun_never_mixes_two_runs_frames(tmp_path, every):
    video = write_video(tmp_path / "clip.avi", 12)
    out = tmp_path / "out"
    assert main(["run", EXPORT, str(video), "--out", str(out), *ORT]) == 0
    assert main(["run", EXPORT, str(video), "--out", str(out), *ORT, "--every", str(every),
                 "--frames", "3"]) == 0
    assert _visible(out) == ["clip.mp4", *[f"clip/{i * every:06d}.json" for i in range(3)]]


def test_largest_every_still_writes_a_playable_video(tmp_path):
    import cv2

    video = write_video(tmp_path / "clip.avi", 6)
    out = tmp_path / "out"
    assert main(["run", EXPORT, str(video), "--out", str(out), *ORT, "--every", "100000"]) == 0
    assert _visible(out) == ["clip.mp4", "clip/000000.json"]
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(1.0) and cap.read()[0]
    cap.release()


def test_a_symlink_in_the_output_folder_never_leads_outside(tmp_path):
    imgs = _images(tmp_path / "imgs", 1)
    video = write_video(tmp_path / "clip.avi", 3)
    out = tmp_path / "out"
    assert main(["run", EXPORT, str(video), "--out", str(out), *ORT]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "000000.json").write_text("the user's")
    shutil.rmtree(out / "clip")
    os.symlink(elsewhere, out / "clip")  # the logged clip/000000.json now points outside
    assert main(["run", EXPORT, str(imgs), "--out", str(out), *ORT, "--force"]) == 0
    assert (elsewhere / "000000.json").read_text() == "the user's"
