"""icnseg.cli.sources: image/video/camera frame sources, the prefetch thread, the video writer."""

from __future__ import annotations

import gc
import threading
import time

import cv2
import numpy as np
import pytest

from icnseg.cli.sources import (
    CaptureSource,
    ImageSource,
    Prefetcher,
    camera_index,
    expand_images,
    expand_inputs,
    iter_frames,
    make_sources,
)
from icnseg.data.synth import render_sample, sample_rng
from icnseg.errors import ConfigError, InputError
from icnseg.output.video import VideoOutput


def synth_frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    """``n`` distinct RGB frames of synthetic shapes at ``size`` (w, h)."""
    return [cv2.resize(render_sample(sample_rng(5, i), size=64)[0], size) for i in range(n)]


def write_video(path, n: int = 5, fps: float = 10.0, fourcc: str = "mp4v", size=(64, 48)):
    """Write a synthetic video with OpenCV; return its RGB frames."""
    frames = synth_frames(n, size)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened()
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return frames


def read_back(path) -> tuple[list[np.ndarray], float]:
    """All frames (RGB) and the fps of a video file, read with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return out, fps


def truncate(path, fraction: float = 0.5):
    data = path.read_bytes()
    cut = path.with_name(f"cut{path.suffix}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def test_video_frames_count_content_and_names(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = write_video(path, 5, fps=12.0)
    src = CaptureSource(path, "clip")
    got = list(src.frames())
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert all(f.error is None for f in got)
    assert [f.name for f in got] == [f"clip.mp4#{i:06d}" for i in range(5)]
    assert got[3].stem == "clip/000003" and got[3].key == "clip/000003"
    assert got[0].origin == str(path)
    for f, ref in zip(got, frames, strict=True):
        assert f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3)
        assert np.abs(f.image.astype(int) - ref).mean() < 12  # lossy, but RGB (not BGR)
    assert src.fps == pytest.approx(12.0) and src.declared == 5


def test_stride_and_frame_limit(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, 10, fps=20.0, fourcc="MJPG")
    src = CaptureSource(path, "v", every=3)
    assert [f.index for f in src.frames()] == [0, 3, 6, 9]
    assert src.output_fps == pytest.approx(20.0 / 3)
    assert [f.index for f in CaptureSource(path, "v", max_frames=2, every=2).frames()] == [0, 2]
    with pytest.raises(ConfigError, match="--frames"):
        CaptureSource(path, "v", max_frames=0)
    with pytest.raises(ConfigError, match="--every"):
        CaptureSource(path, "v", every=0)


def test_truncated_video_gives_frames_then_one_error(tmp_path):
    full = tmp_path / "long.mkv"
    write_video(full, 10)
    cut = truncate(full)
    got = list(CaptureSource(cut, "cut").frames())
    good, last = got[:-1], got[-1]
    assert 0 < len(good) < 10 and all(f.error is None for f in good)
    assert isinstance(last.error, InputError) and last.image is None
    msg = str(last.error)
    assert msg.startswith(f"{cut}:") and f"read {len(good)} of the 10 frames" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("content", [b"", b"not a video at all", "half-mp4"])
def test_unopenable_video_is_one_error_item(tmp_path, content):
    if content == "half-mp4":  # OpenCV's MP4 keeps its index at the end: unopenable when cut
        write_video(tmp_path / "x.mp4", 5)
        path = truncate(tmp_path / "x.mp4")
    else:
        path = tmp_path / "bad.mp4"
        path.write_bytes(content)
    got = list(CaptureSource(path, "bad").frames())
    assert len(got) == 1 and isinstance(got[0].error, InputError)
    assert str(got[0].error).startswith(f"{path}: ")


def test_camera_that_cannot_open(tmp_path):
    got = list(CaptureSource(99, "camera99").frames())
    assert len(got) == 1 and got[0].origin == "camera 99"
    assert str(got[0].error).startswith("camera 99: cannot open")


def test_camera_index_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert camera_index("0") == 0 and camera_index("cam:3") == 3
    assert camera_index("camera:12") == 12
    assert camera_index("clip.mp4") is None and camera_index("-1") is None
    (tmp_path / "2").mkdir()  # an existing path wins over a bare number
    assert camera_index("2") is None and camera_index("cam:2") == 2
    with pytest.raises(InputError, match="cam:x: camera index"):
        camera_index("cam:x")


def test_expand_and_group_sources(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(d / name), np.zeros((8, 8, 3), np.uint8))
    write_video(d / "a.mp4", 2)
    (d / "notes.txt").write_text("x")
    items = expand_inputs([str(d), "cam:1", str(d / "*.mp4")])
    assert items == [d / "a.jpg", d / "a.mp4", d / "b.png", 1, d / "a.mp4"]
    sources = make_sources(items, max_frames=4, every=2)
    kinds = [s.kind for s in sources]
    assert kinds == ["images", "video", "images", "camera", "video"]
    assert sources[0].stems == ["a"] and sources[1].stem == "a-1"
    assert sources[3].stem == "camera1" and sources[4].stem == "a-2"
    assert sources[1].max_frames == 4 and sources[1].every == 2
    with pytest.raises(InputError, match="matches no images or videos"):
        expand_inputs([str(tmp_path / "*.mkv")])
    assert expand_images([str(d / "*.png")]) == [d / "b.png"]
    with pytest.raises(InputError, match="a.mp4: this command takes images"):
        expand_images([str(d)])


def test_image_source_bad_file_fails_alone(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((6, 7, 3), 9, np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    got = list(iter_frames([ImageSource([bad, good], ["bad", "good"])]))
    assert str(got[0].error).startswith(str(bad)) and got[0].image is None
    assert got[1].error is None and got[1].image.shape == (6, 7, 3) and got[1].name == "good.png"


# ---------------------------------------------------------------- Prefetcher


def test_prefetch_same_sequence_as_plain_iteration(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 6, fourcc="MJPG")
    plain = [(f.name, f.image) for f in CaptureSource(path, "clip").frames()]
    with Prefetcher(CaptureSource(path, "clip").frames(), depth=2) as frames:
        fetched = [(f.name, f.image) for f in frames]
    assert [n for n, _ in fetched] == [n for n, _ in plain]
    for (_, a), (_, b) in zip(fetched, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    with Prefetcher(range(7), fn=lambda x: x * x, depth=3) as p:
        assert list(p) == [x * x for x in range(7)]
        assert list(p) == []  # exhausted stays exhausted


def test_prefetch_runs_ahead_in_another_thread():
    produced: list[int] = []
    threads: set[int] = set()
    ready = [threading.Event() for _ in range(10)]

    def source():
        for i in range(10):
            threads.add(threading.get_ident())
            produced.append(i)
            ready[i].set()
            yield i

    consumer = threading.get_ident()
    with Prefetcher(source(), fn=lambda x: (x, threading.get_ident()), depth=2) as p:
        for i, (item, fn_thread) in enumerate(p):
            assert item == i and fn_thread != consumer
            if i + 1 < 10:  # the next item is produced while this one is "being segmented"
                assert ready[i + 1].wait(5.0)
            # bounded: one item here, `depth` queued, one finished waiting for a slot
            assert len(produced) <= i + 1 + 2 + 1
            time.sleep(0.01)
    assert threads and consumer not in threads


def test_producer_errors_reach_the_consumer():
    def source():
        yield 1
        yield 2
        raise InputError("clip.mp4: decoder exploded")

    p = Prefetcher(source())
    assert next(p) == 1 and next(p) == 2
    with pytest.raises(InputError, match="clip.mp4: decoder exploded"):
        next(p)
    assert not p.thread.is_alive()
    with pytest.raises(StopIteration):
        next(p)

    def bad(x):
        if x == 3:
            raise ValueError(f"frame {x} of b.mkv")
        return x

    with Prefetcher(range(10), fn=bad) as p, pytest.raises(ValueError, match="b.mkv"):
        list(p)


def _endless(closed: threading.Event):
    try:
        i = 0
        while True:
            yield i
            i += 1
    finally:
        closed.set()  # where a VideoCapture is released


def test_early_stop_ends_the_thread_and_closes_the_source():
    closed = threading.Event()
    with Prefetcher(_endless(closed), depth=2) as p:
        assert next(p) == 0
    assert not p.thread.is_alive() and closed.is_set()

    closed = threading.Event()
    with pytest.raises(RuntimeError), Prefetcher(_endless(closed)) as p:
        next(p)
        raise RuntimeError("consumer failed")
    assert not p.thread.is_alive() and closed.is_set()


def test_dropped_prefetcher_stops_its_thread():
    closed = threading.Event()
    p = Prefetcher(_endless(closed), depth=2)
    next(p)
    thread = p.thread
    del p
    gc.collect()
    thread.join(5.0)
    assert not thread.is_alive() and closed.is_set()


def test_prefetch_depth_must_be_positive():
    with pytest.raises(ConfigError):
        Prefetcher(range(3), depth=0)


# ---------------------------------------------------------------- VideoOutput


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_video_output_writes_atomically(tmp_path):
    frames = synth_frames(4)
    with VideoOutput(tmp_path / "o" / "clip.mp4", fps=8.0) as v:
        for f in frames:
            v.write(f)
        assert not (tmp_path / "o" / "clip.mp4").exists()  # only the temp file so far
    assert v.codec == "mp4v" and v.path == tmp_path / "o" / "clip.mp4"
    back, fps = read_back(v.path)
    assert len(back) == 4 and back[0].shape == (48, 64, 3) and fps == pytest.approx(8.0)
    assert np.abs(back[2].astype(int) - frames[2]).mean() < 12
    assert _leftovers(tmp_path / "o") == []


def test_video_output_interrupted_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), VideoOutput(tmp_path / "clip.mp4", 10) as v:
        v.write(synth_frames(1)[0])
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    empty = VideoOutput(tmp_path / "none.mp4", 10)
    assert empty.close() is None and list(tmp_path.iterdir()) == []


def test_video_output_falls_back_to_mjpg_avi(tmp_path):
    codecs = (("mp4v", ".nosuchcontainer"), ("MJPG", ".avi"))
    v = VideoOutput(tmp_path / "clip.mp4", 10, codecs=codecs)
    for f in synth_frames(3, size=(33, 21)):  # odd sizes too
        v.write(f)
    v.write(np.zeros((10, 10, 3), np.uint8))  # a frame of another size is resized
    assert v.close() == tmp_path / "clip.avi" and v.codec == "MJPG"
    back, _ = read_back(tmp_path / "clip.avi")
    assert len(back) == 4 and back[0].shape == (20, 32, 3)  # the encoders need even sides
    assert _leftovers(tmp_path) == []
