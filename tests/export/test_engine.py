"""build-engine without TensorRT: profiles, option checks, manifest checks, cache reuse, the
clear "install the extra" error, calibration inputs, and the CLI's argument validation."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.artifacts.manifest import read_manifest
from icnseg.artifacts.profiles import default_k_opt, graph_input_shapes, profile_shapes
from icnseg.errors import BackendUnavailable, ConfigError, ExportError, InputError
from icnseg.export.engine import build_engines, onnx_to_engine

ASSETS = Path(__file__).resolve().parents[2] / "icnseg" / "assets"
ENV = TrtEnv("tensorrt", "10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture()
def export(tmp_path, static_export) -> Path:
    """A writable static-K export of the default model (tiny model, 96x96, K_max 32)."""
    return Path(shutil.copytree(static_export, tmp_path / "export"))


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make `import tensorrt` / `import tensorrt_rtx` fail, as on a machine without them."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)


class FakeBuild:
    """Records what build_engines asks for and writes placeholder engine bytes."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, onnx: Path, engine: Path, **kw) -> Path:
        self.calls.append({"onnx": onnx, **kw})
        engine.write_bytes(b"plan:" + onnx.name.encode())
        return engine


def test_profiles_from_manifest():
    m = read_manifest(ASSETS / "export")
    assert graph_input_shapes(m, "prm") == {"image": (1, 3, 96, 96)}
    assert profile_shapes(graph_input_shapes(m, "prm"), 32, (96, 96)) == {}
    icn = profile_shapes(graph_input_shapes(m, "icn"), 32, (96, 96))
    assert icn == {"prm": ((1, 1, 96, 96), (8, 1, 96, 96), (32, 1, 96, 96))}
    dyn = graph_input_shapes({**m, "dynamic_size": True}, "icn")
    assert dyn == {"image": (1, 3, -1, -1), "prm": (-1, 1, -1, -1)}
    p = profile_shapes(dyn, 4, (96, 96), k_opt=2, size_range=((64, 64), (128, 160)))
    assert p["image"] == ((1, 3, 64, 64), (1, 3, 96, 96), (1, 3, 128, 160))
    assert p["prm"] == ((1, 1, 64, 64), (2, 1, 96, 96), (4, 1, 128, 160))
    assert default_k_opt(3) == 3 and default_k_opt(100) == 8
    with pytest.raises(ConfigError, match="opt K"):
        profile_shapes(dyn, 4, (96, 96), k_opt=5)
    with pytest.raises(ConfigError, match="size range"):
        profile_shapes(dyn, 4, (96, 96), size_range=((128, 128), (256, 256)))
    with pytest.raises(ExportError, match="axis 1"):
        profile_shapes({"x": (1, -1, 4, 4)}, 4, (4, 4))
    with pytest.raises(ConfigError, match="role"):
        graph_input_shapes(m, "head")


def test_build_then_reuse(export):
    fake = FakeBuild()
    first = build_engines(export, "fp16", env=ENV, build_fn=fake)
    assert [r.role for r in first] == ["prm", "icn"] and not any(r.reused for r in first)
    assert [c["onnx"].name for c in fake.calls] == ["prm.onnx", "icn.onnx"]
    call = fake.calls[0]
    assert call["precision"] == "fp16" and call["manifest"]["k_max"] == 32
    assert call["timing_cache"].parent == export / "engines"
    assert call["calib_images"] is None and call["dla_core"] is None
    second = build_engines(export, "fp16", env=ENV, build_fn=fake)
    assert all(r.reused for r in second) and len(fake.calls) == 2
    assert [r.path for r in second] == [r.path for r in first]
    fp32 = build_engines(export, "fp32", env=ENV, build_fn=fake)  # another precision, another key
    assert not any(r.reused for r in fp32) and len(fake.calls) == 4
    first[1].path.write_bytes(b"plan:trunc")  # same prefix, other bytes
    third = build_engines(export, "fp16", env=ENV, build_fn=fake)
    assert third[0].reused and not third[1].reused
    assert "truncated" in third[1].rebuilt_because or "corrupt" in third[1].rebuilt_because


def test_options_are_checked_first(export, tmp_path):
    with pytest.raises(ConfigError, match="--calib"):
        build_engines(export, "int8", env=ENV, build_fn=FakeBuild())
    with pytest.raises(ConfigError, match="FP16 or INT8"):
        build_engines(export, "fp32", dla_core=0, env=ENV, build_fn=FakeBuild())
    with pytest.raises(ConfigError, match="workspace"):
        build_engines(export, "fp16", workspace_mb=-1, env=ENV, build_fn=FakeBuild())
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match=rf"{empty}: no images"):
        build_engines(export, "int8", calib=empty, env=ENV, build_fn=FakeBuild())
    with pytest.raises(InputError, match="not a folder of"):
        build_engines(export, "int8", calib=tmp_path / "absent", env=ENV, build_fn=FakeBuild())
    rtx = dataclasses.replace(ENV, flavour="tensorrt_rtx")
    with pytest.raises(ConfigError, match="TensorRT-RTX"):
        build_engines(export, "fp16", env=rtx, build_fn=FakeBuild())


def test_int8_key_follows_the_calibration_images(export, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((ASSETS / "samples").glob("*.jpg")):
        shutil.copy(p, calib / p.name)
    fake = FakeBuild()
    a = build_engines(export, "int8", calib=calib, env=ENV, build_fn=fake)
    assert [p.name for p in fake.calls[0]["calib_images"]] == sorted(
        p.name for p in calib.glob("*.jpg"))
    assert fake.calls[0]["calib_cache"] == a[0].path.with_suffix(".calib")
    assert all(r.reused for r in build_engines(export, "int8", calib=calib, env=ENV,
                                                build_fn=fake))
    first = sorted(calib.glob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:-1] + b"\x00")  # another calibration set
    b = build_engines(export, "int8", calib=calib, env=ENV, build_fn=fake)
    assert not any(r.reused for r in b) and {r.path for r in a}.isdisjoint(r.path for r in b)


def test_manifest_problems_are_clear(export, tmp_path):
    with pytest.raises(InputError, match="no manifest"):
        build_engines(tmp_path, "fp32", env=ENV, build_fn=FakeBuild())
    with pytest.raises(InputError, match="not an export directory"):
        build_engines(tmp_path / "nowhere", "fp32", env=ENV, build_fn=FakeBuild())
    data = bytearray((export / "prm.onnx").read_bytes())
    data[-5] ^= 0xFF
    (export / "prm.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"prm\.onnx: sha256 .* does not match"):
        build_engines(export, "fp32", env=ENV, build_fn=FakeBuild())


def test_missing_tensorrt_names_the_extra(export, no_tensorrt):
    with pytest.raises(BackendUnavailable, match=r"pip install 'icnseg\[tensorrt\]'") as info:
        build_engines(export, "fp16")
    assert "\n" not in str(info.value) and "JetPack" in str(info.value)
    with pytest.raises(BackendUnavailable, match=r"icnseg\[tensorrt\]"):
        onnx_to_engine(export / "prm.onnx", export / "prm.engine",
                       manifest=read_manifest(export))
    assert not (export / "engines").exists()


def test_old_tensorrt_is_refused(monkeypatch):
    from icnseg.artifacts.trt_env import import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(BackendUnavailable, match="8.6.1 is too old"):
        import_tensorrt()


def test_calibration_inputs_match_the_runtime():
    pytest.importorskip("onnxruntime")
    from icnseg.data.images import list_images
    from icnseg.data.voc import read_image
    from icnseg.export.calibrator import calibration_feeds, images_digest
    from icnseg.preprocess import prepare_input

    m = read_manifest(ASSETS / "export")
    images = list_images(ASSETS / "samples")
    assert len(images) == 3 and len(images_digest(images)) == 64
    prm_feeds = list(calibration_feeds(["image"], images, m))
    _, want = prepare_input(read_image(images[0]), (96, 96), m["mean"], m["std"])
    np.testing.assert_array_equal(prm_feeds[0]["image"], want)
    icn_feeds = list(calibration_feeds(["image", "prm"], images, m,
                                       ASSETS / "export" / "prm.onnx", k=8))
    assert icn_feeds and all(f["prm"].shape == (8, 1, 96, 96) for f in icn_feeds)
    assert all(f["prm"].dtype == np.float32 and f["prm"].max() > 0 for f in icn_feeds)


# ---- CLI: `icnseg build-engine` registered on a fresh parser --------------------------------

def _cli(argv: list[str]) -> argparse.Namespace:
    from icnseg.cli.engine import add_parser

    parser = argparse.ArgumentParser(prog="icnseg")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["build-engine", *argv])


def test_cli_arguments():
    args = _cli(["DIR", "--fp16", "--dla", "1", "--workspace", "2048", "--timing-cache", "t.c",
                 "--force"])
    assert (args.dir, args.fp16, args.int8, args.dla, args.workspace) == ("DIR", True, False,
                                                                          1, 2048)
    assert args.timing_cache == "t.c" and args.force and args.calib is None
    with pytest.raises(SystemExit):
        _cli(["DIR", "--dla", "x"])


def test_cli_validation(export, tmp_path, no_tensorrt):
    with pytest.raises(ConfigError, match="--int8 needs calibration images"):
        (a := _cli([str(export), "--int8"])).func(a)
    with pytest.raises(ConfigError, match="--calib is only used with --int8"):
        (a := _cli([str(export), "--calib", str(tmp_path)])).func(a)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=rf"{tmp_path / 'empty'}: no images"):
        (a := _cli([str(export), "--int8", "--calib", str(tmp_path / "empty")])).func(a)
    with pytest.raises(InputError, match="no manifest"):
        (a := _cli([str(tmp_path), "--fp16"])).func(a)
    with pytest.raises(BackendUnavailable, match=r"icnseg\[tensorrt\]"):
        (a := _cli([str(export), "--fp16"])).func(a)


def test_cli_prints_built_then_reused(export, monkeypatch, capsys):
    import icnseg.export.engine as engine

    real = engine.build_engines
    monkeypatch.setattr(engine, "build_engines",
                        lambda *a, **kw: real(*a, env=ENV, build_fn=FakeBuild(), **kw))
    args = _cli([str(export), "--fp16"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "building prm.onnx (fp16)" in out
    assert "built  prm.onnx" in out and "built  icn.onnx" in out
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "reused prm.onnx" in out and "reused icn.onnx" in out and "building" not in out


def test_fp32_layers_are_the_prm_rule_reciprocal_chain() -> None:
    import onnx

    from icnseg.export.engine import fp32_layers
    from icnseg.loader import ASSETS

    graph = onnx.load(str(ASSETS / "export" / "prm.onnx")).graph
    names = [n.name for n in graph.node]
    pinned = set(fp32_layers(names))
    recip = [n for n in graph.node if n.op_type == "Reciprocal"]
    assert recip and all(n.name in pinned for n in recip)
    # everything fed by a Reciprocal up to the conv transposes is pinned; the forward is not
    assert not any(n.op_type in ("Relu", "MaxPool") for n in graph.node if n.name in pinned)
    convs = [n for n in graph.node if n.op_type == "Conv" and n.name.endswith(".z")]
    assert convs and not any(c.name in pinned for c in convs)
    assert fp32_layers(["n/layer1.0.conv1.invz_3", "n/x.gback/ConvTranspose", "n/x.grad"]) == [
        "n/layer1.0.conv1.invz_3", "n/x.gback/ConvTranspose"]


def test_size_range_needs_a_dynamic_size_export(export, tmp_path):
    from icnseg.export.exporter import checkpoint_to_onnx

    sizes = ((64, 64), (192, 160))
    with pytest.raises(ConfigError, match="--dynamic-size"):
        build_engines(export, "fp32", env=ENV, build_fn=FakeBuild(), size_range=sizes)
    dyn = checkpoint_to_onnx("default", tmp_path / "dyn", dynamic_size=True).out_dir
    fake = FakeBuild()
    results = build_engines(dyn, "fp32", env=ENV, build_fn=fake, size_range=sizes)
    icn = next(c for c in fake.calls if c["onnx"].name == "icn.onnx")
    assert icn["size_range"] == sizes and not any(r.reused for r in results)
    # another range is another engine (the profiles are part of the cache key)
    again = build_engines(dyn, "fp32", env=ENV, build_fn=fake, size_range=((64, 64), (96, 96)))
    assert again[0].reused and not again[1].reused
