"""`icnseg run` on videos and cameras: per-frame JSON, annotated video, clear errors."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest

import icnseg
from icnseg.cli.main import main
from icnseg.cli.run import FrameSegmenter, run_sources
from icnseg.cli.sources import CaptureSource, Frame, make_sources
from icnseg.data.synth import render_sample, sample_rng
from icnseg.errors import InputError
from icnseg.outdir import MARKER

ORT = ["--backend", "onnxruntime"]


def synth_frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    """``n`` distinct RGB frames of synthetic shapes at ``size`` (w, h)."""
    return [cv2.resize(render_sample(sample_rng(7, i), size=64)[0], size) for i in range(n)]


def write_video(path, n: int, fps: float = 10.0, fourcc: str = "mp4v") -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert w.isOpened()
    for f in synth_frames(n):
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()


def read_back(path) -> tuple[list[np.ndarray], float]:
    """All frames and the fps of a video file, read back with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def truncate(path):
    """A copy of ``path`` cut in the middle: cut<suffix>."""
    data = path.read_bytes()
    cut = path.with_name(f"cut{path.suffix}")
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.fixture()
def clip(tmp_path):
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    write_video(path, 5, fps=12.0)
    return path


def test_video_gives_frame_json_and_annotated_video(clip, tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "out"
    rc, stdout, errors = run_cli(["run", "default", str(clip), "--out", str(out), *ORT])
    assert rc == 0, errors
    for i in range(5):
        rec = json.loads((out / "clip" / f"{i:06d}.json").read_text())
        assert rec["image"] == f"clip.mp4#{i:06d}"
        assert (rec["height"], rec["width"]) == (48, 64)
        for inst in rec["instances"]:
            assert inst["mask"]["size"] == [48, 64]
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"{i:06d}.json" for i in range(5)]
    assert json.loads((out / "run.json").read_text())["backend"] == "onnxruntime"  # once
    frames, fps = read_back(out / "clip.mp4")
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3) and fps == pytest.approx(12.0)
    assert "5 frame(s) of 1 video(s) segmented" in stdout and "0 failed" in stdout
    assert f"annotated video: {out / 'clip.mp4'}" in stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]


def test_truncated_video_keeps_decoded_frames_and_fails(tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    full = tmp_path / "long.mkv"
    write_video(full, 10)
    cut = truncate(full)
    out = tmp_path / "out"
    rc, stdout, errors = run_cli(["run", "default", str(cut), "--out", str(out), *ORT])
    assert rc == 1
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"icnseg: error: {cut}: video ends early: read ")
    assert "of the 10 frames" in errors[0]
    n = len(list((out / "cut").glob("*.json")))
    assert 0 < n < 10
    frames, _ = read_back(out / "cut.mp4")  # finalised with the frames it has
    assert len(frames) == n
    assert f"{n} frame(s) of 1 video(s) segmented" in stdout and "1 failed" in stdout


def test_bad_video_and_camera_fail_alone(clip, tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF but not really")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), cv2.cvtColor(synth_frames(1)[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    rc, stdout, errors = run_cli(["run", "default", str(bad), "cam:99", str(image), "--out",
                                  str(out), *ORT])
    assert rc == 1
    assert errors == [
        f"icnseg: error: {bad}: cannot open as a video (not a video, unsupported codec, "
        "or a corrupt or truncated file)",
        "icnseg: error: camera 99: cannot open (no such device, busy, or no camera support "
        "in this OpenCV build)",
    ]
    assert (out / "img.json").is_file() and (out / "img.png").is_file()
    assert not (out / "bad.mp4").exists() and not (out / "camera99.mp4").exists()
    assert "1 image(s) + 0 frame(s) of 2 video(s) segmented" in stdout and "2 failed" in stdout


def test_stride_limit_and_frame_pngs(tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    video = tmp_path / "v.avi"
    write_video(video, 9, fps=30.0, fourcc="MJPG")
    out = tmp_path / "out"
    rc, _, errors = run_cli(["run", "default", str(video), "--out", str(out), "--every", "3",
                             "--frames", "2", "--frame-png", *ORT])
    assert rc == 0, errors
    assert sorted(p.name for p in (out / "v").iterdir()) == [
        "000000.json", "000000.png", "000003.json", "000003.png"]
    frames, fps = read_back(out / "v.mp4")
    assert len(frames) == 2 and fps == pytest.approx(10.0)


def test_bad_frame_options(clip, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # refused by the bound, before anything runs
        main(["run", "default", str(clip), "--out", str(tmp_path / "o"), "--every", "0", *ORT])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and err[-1] == ("icnseg run: error: argument --every: 0 is "
                                               "outside [1, 100000]")
    assert not (tmp_path / "o").exists()


def test_prepared_halves_equal_the_one_shot_pipeline(clip):
    pytest.importorskip("onnxruntime")
    from icnseg.loader import resolve_export_dir
    from icnseg.runtime.exported_model import ExportedModel

    model = ExportedModel(resolve_export_dir("default"))
    cfg = model.segment_config()
    seg = FrameSegmenter(model, cfg)
    for frame in CaptureSource(clip, "clip").frames():
        ref = icnseg.segment(model, frame.image, config=cfg)
        got, prm = seg.segment(seg.prepare(frame.image))
        assert prm is None and len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            assert (a.class_name, a.score, a.peak) == (b.class_name, b.score, b.peak)
            np.testing.assert_array_equal(a.mask, b.mask)


def _fake_segment(stop_at: int, exc: BaseException):
    """A segment_fn that finds nothing and raises ``exc`` at call ``stop_at``."""
    calls = []

    def fn(image, proposals):
        calls.append(threading.get_ident())
        if len(calls) == stop_at:
            raise exc
        return [], None

    fn.calls = calls
    return fn


def test_interrupted_video_leaves_no_half_file(clip, tmp_path):
    out = tmp_path / "out"
    fn = _fake_segment(3, KeyboardInterrupt())
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        run_sources(fn, make_sources([clip]), out, {}, progress=False)
    assert len(list((out / "clip").glob("*.json"))) == 2
    assert not (out / "clip.mp4").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]
    assert threading.active_count() == before  # the prefetch thread is gone

    fn = _fake_segment(2, RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        run_sources(fn, make_sources([clip]), tmp_path / "o2", {}, progress=False)
    assert not (tmp_path / "o2" / "clip.mp4").exists()


class _FakeCamera:
    """A live source with endless synthetic frames, like a camera."""

    kind, live, stem, label, output_fps = "camera", True, "camera0", "camera 0", 15.0

    def frames(self):
        image = synth_frames(1)[0]
        i = 0
        while True:
            yield Frame(self, i, f"camera0#{i:06d}", f"camera0/{i:06d}", f"camera0/{i:06d}",
                        self.label, image.copy())
            i += 1


def test_camera_stopped_by_ctrl_c_keeps_its_video(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sources(_fake_segment(4, KeyboardInterrupt()), [_FakeCamera()], out, {},
                    progress=False)
    frames, fps = read_back(out / "camera0.mp4")
    assert len(frames) == 3 and fps == pytest.approx(15.0)


def test_segment_errors_name_the_frame(clip, tmp_path):
    logged: list[str] = []
    fn = _fake_segment(2, InputError("image: expected uint8 pixels"))
    summary = run_sources(fn, make_sources([clip]), tmp_path / "o", {}, progress=False,
                          log=logged.append)
    assert logged == ["icnseg: error: clip.mp4#000001: image: expected uint8 pixels"]
    assert summary.failed == [(str(clip), "clip.mp4#000001: image: expected uint8 pixels")]
    assert summary.frames == 4 and summary.videos == [str(tmp_path / "o" / "clip.mp4")]
    assert len(fn.calls) == 5 and set(fn.calls) == {threading.get_ident()}  # device work here


@pytest.mark.parametrize("depth", ["0", "2"])
def test_inline_and_prefetched_runs_write_the_same(clip, tmp_path, capsys, depth, run_cli):
    pytest.importorskip("onnxruntime")
    ref, out = tmp_path / "ref", tmp_path / f"d{depth}"
    assert run_cli(["run", "default", str(clip), "--out", str(ref), *ORT])[0] == 0
    rc, _, errors = run_cli(["run", "default", str(clip), "--out", str(out), "--prefetch", depth,
                             *ORT])
    assert rc == 0, errors
    for i in range(5):
        a = json.loads((ref / "clip" / f"{i:06d}.json").read_text())["instances"]
        b = json.loads((out / "clip" / f"{i:06d}.json").read_text())["instances"]
        assert a == b
    assert len(read_back(out / "clip.mp4")[0]) == 5
    with pytest.raises(SystemExit) as exc:  # the bound refuses it before anything runs
        main(["run", "default", str(clip), "--out", str(tmp_path / "x"), "--prefetch", "-1",
              *ORT])
    assert exc.value.code == 2
    assert "argument --prefetch: -1 is outside [0, 64]" in capsys.readouterr().err
