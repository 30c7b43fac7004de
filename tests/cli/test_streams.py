"""Stream inputs: an http:// URL served on 127.0.0.1 read end to end (the URL path RTSP takes
too: OpenCV's FFmpeg), RTSP refused cleanly, GStreamer pipelines without GStreamer support."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import cv2
import numpy as np
import pytest

from icnseg.cli.capture import capture_stem, stream_kind
from icnseg.cli.main import main
from icnseg.data.synth import render_sample, sample_rng


@pytest.fixture()
def served_clip(tmp_path):
    """A 6-frame synthetic mp4 served over HTTP on 127.0.0.1 (stops after the test)."""
    clip = tmp_path / "web" / "clip.mp4"
    clip.parent.mkdir()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 96))
    for i in range(6):
        writer.write(cv2.cvtColor(render_sample(sample_rng(11, i), size=96)[0],
                                  cv2.COLOR_RGB2BGR))
    writer.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(clip.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    server.shutdown()
    server.server_close()


def test_stream_names():
    assert stream_kind("rtsp://127.0.0.1:8554/cam") == "rtsp"
    assert stream_kind("https://example.invalid/a.mp4") == "http"
    assert stream_kind("videotestsrc ! videoconvert ! appsink") == "gstreamer"
    assert stream_kind("clip.mp4") is None and stream_kind("0") is None
    assert capture_stem("rtsp://127.0.0.1:8554/front/cam?x=1") == "cam"
    assert capture_stem("http://127.0.0.1:8000/clip.mp4") == "clip"


def test_http_stream_end_to_end(served_clip, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "o"
    errors: list[str] = []
    rc = main(["run", "default", served_clip, "--out", str(out), "--frames", "4",
               "--backend", "onnxruntime"], err=errors.append)
    stdout = capsys.readouterr().out
    assert rc == 0, errors
    frames = sorted((out / "clip").glob("*.json"))
    assert [f.stem for f in frames] == ["000000", "000001", "000002", "000003"]
    rec = json.loads(frames[0].read_text())
    assert rec["image"] == "clip#000000" and (rec["height"], rec["width"]) == (96, 96)
    assert "annotated video:" in stdout and ("(mp4v" in stdout or "(avc1" in stdout)
    video = cv2.VideoCapture(str(out / "clip.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    ok, first = video.read()
    assert ok and first.shape == (96, 96, 3) and np.any(first)


def test_refused_rtsp_and_missing_gstreamer_are_one_line_errors(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    errors: list[str] = []
    rc = main(["run", "default", "rtsp://127.0.0.1:9/nothing", "--out", str(tmp_path / "a"),
               "--backend", "onnxruntime"], err=errors.append)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("icnseg: error")] + errors
    assert rc == 1 and lines == ["icnseg: error: rtsp://127.0.0.1:9/nothing: cannot open the "
                                 "stream (unreachable, refused, not a video, or a protocol "
                                 "this OpenCV's FFmpeg lacks)"]
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    rc = main(["run", "default", "videotestsrc num-buffers=3 ! videoconvert ! appsink",
               "--out", str(tmp_path / "b"), "--backend", "onnxruntime"])
    err = capsys.readouterr().err
    assert rc == 1 and "this OpenCV build has no GStreamer support" in err
