"""build-engine without TensorRT: profiles, option checks, manifest checks, cache reuse, the
clear "install the extra" error, strongly typed networks, the TensorRT-RTX GPU gate, and the
CLI's argument validation (--fp16/--int8 point to export --precision)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from icnseg.artifacts.engine_cache import TrtEnv
from icnseg.artifacts.manifest import read_manifest
from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest
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


def _set_precision(export: Path, precision: str, calib: str | None = None) -> None:
    """Mark the export's manifest as ``precision`` (the graphs stay; the key must follow)."""
    import json

    path = export / "manifest.json"
    m = json.loads(path.read_text())
    m["precision"] = precision
    if calib:
        m["calibration"] = {"sha256": calib, "images": 3}
    m[DIGEST_KEY] = manifest_digest(m)  # a consistent manifest: the test is about the key
    path.write_text(json.dumps(m))


def test_build_then_reuse(export):
    fake = FakeBuild()
    first = build_engines(export, env=ENV, build_fn=fake)
    assert [r.role for r in first] == ["prm", "icn"] and not any(r.reused for r in first)
    assert [c["onnx"].name for c in fake.calls] == ["prm.onnx", "icn.onnx"]
    call = fake.calls[0]
    assert "precision" not in call and call["manifest"]["k_max"] == 32
    assert call["timing_cache"].parent == export / "engines"
    assert "calib_images" not in call and call["dla_core"] is None
    assert all(r.precision == "fp32" for r in first)
    second = build_engines(export, env=ENV, build_fn=fake)
    assert all(r.reused for r in second) and len(fake.calls) == 2
    assert [r.path for r in second] == [r.path for r in first]
    _set_precision(export, "fp16")  # the export's precision is part of the key
    fp16 = build_engines(export, env=ENV, build_fn=fake)
    assert not any(r.reused for r in fp16) and len(fake.calls) == 4
    assert all(r.precision == "fp16" for r in fp16)
    fp16[1].path.write_bytes(b"plan:trunc")  # same prefix, other bytes
    third = build_engines(export, env=ENV, build_fn=fake)
    assert third[0].reused and not third[1].reused
    assert "truncated" in third[1].rebuilt_because or "corrupt" in third[1].rebuilt_because


def test_options_are_checked_first(export):
    _set_precision(export, "fp32")
    with pytest.raises(ConfigError, match="FP16 or INT8"):
        build_engines(export, dla_core=0, env=ENV, build_fn=FakeBuild())
    with pytest.raises(ConfigError, match="workspace"):
        build_engines(export, workspace_mb=-1, env=ENV, build_fn=FakeBuild())
    rtx = dataclasses.replace(ENV, flavour="tensorrt_rtx")  # H100: not in RTX's matrix
    with pytest.raises(ConfigError, match=r"TensorRT-RTX .* does not support .*9\.0") as info:
        build_engines(export, env=rtx, build_fn=FakeBuild())
    assert "\n" not in str(info.value)
    _set_precision(export, "fp16")
    with pytest.raises(ConfigError, match="TensorRT-RTX has no DLA"):
        build_engines(export, dla_core=0, env=dataclasses.replace(rtx, compute_capability="8.9"),
                      build_fn=FakeBuild())
    _set_precision(export, "int8")  # an int8 manifest without its calibration record
    with pytest.raises(InputError, match="int8 without a calibration record"):
        build_engines(export, env=ENV, build_fn=FakeBuild())
    _set_precision(export, "bf16")
    with pytest.raises(InputError, match=r"manifest\.json: precision 'bf16'"):
        build_engines(export, env=ENV, build_fn=FakeBuild())


@pytest.mark.parametrize(("cc", "ok"), [("7.5", True), ("8.6", True), ("8.9", True),
                                        ("12.0", True), ("12.1", True), ("8.0", False),
                                        ("9.0", False), ("10.0", False), ("7.0", False)])
def test_tensorrt_rtx_compute_capability_gate(cc, ok):
    from icnseg.artifacts.trt_env import check_flavour_gpu

    env = TrtEnv("tensorrt_rtx", "1.2.0", "some GPU", cc)
    if ok:
        check_flavour_gpu(env)
    else:
        with pytest.raises(ConfigError, match=f"compute capability {re.escape(cc)}"):
            check_flavour_gpu(env)
    trt = dataclasses.replace(env, flavour="tensorrt")  # TensorRT 10: compute capability >= 7.5
    if cc == "7.0":
        with pytest.raises(ConfigError, match="compute capability 7.0; it needs >= 7.5"):
            check_flavour_gpu(trt)
    else:
        check_flavour_gpu(trt)


def test_int8_key_follows_the_calibration_set(export):
    fake = FakeBuild()
    _set_precision(export, "int8", "a" * 64)
    a = build_engines(export, env=ENV, build_fn=fake)
    assert all(r.reused for r in build_engines(export, env=ENV, build_fn=fake))
    _set_precision(export, "int8", "b" * 64)  # another calibration set, other Q/DQ scales
    b = build_engines(export, env=ENV, build_fn=fake)
    assert not any(r.reused for r in b) and {r.path for r in a}.isdisjoint(r.path for r in b)


class FakeTrt(types.SimpleNamespace):
    """Just enough of a TensorRT module for ``network_flags``."""

    class NetworkDefinitionCreationFlag:  # noqa: D106 - the real enum's name
        STRONGLY_TYPED = 5


def test_networks_are_strongly_typed():
    from icnseg.export.engine import network_flags

    assert network_flags(FakeTrt(__version__="10.3.0"), "tensorrt") == 1 << 5
    assert network_flags(FakeTrt(__version__="11.4.0.106"), "tensorrt") == 0  # the only mode
    assert network_flags(FakeTrt(__version__="1.2.0"), "tensorrt_rtx") == 0


def test_manifest_problems_are_clear(export, tmp_path):
    with pytest.raises(InputError, match="no manifest"):
        build_engines(tmp_path, env=ENV, build_fn=FakeBuild())
    with pytest.raises(InputError, match="not an export directory"):
        build_engines(tmp_path / "nowhere", env=ENV, build_fn=FakeBuild())
    data = bytearray((export / "prm.onnx").read_bytes())
    data[-5] ^= 0xFF
    (export / "prm.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"prm\.onnx: sha256 .* does not match"):
        build_engines(export, env=ENV, build_fn=FakeBuild())


def test_missing_tensorrt_names_the_extra(export, no_tensorrt):
    with pytest.raises(BackendUnavailable, match=r"pip install 'icnseg\[tensorrt\]'") as info:
        build_engines(export)
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


# ---- CLI: `icnseg build-engine` registered on a fresh parser --------------------------------

def _cli(argv: list[str]) -> argparse.Namespace:
    from icnseg.cli.engine import add_parser

    parser = argparse.ArgumentParser(prog="icnseg")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["build-engine", *argv])


def test_cli_arguments():
    args = _cli(["DIR", "--dla", "1", "--workspace", "2048", "--timing-cache", "t.c", "--force"])
    assert (args.dir, args.dla, args.workspace) == ("DIR", 1, 2048)
    assert args.timing_cache == "t.c" and args.force
    with pytest.raises(SystemExit):
        _cli(["DIR", "--dla", "x"])


@pytest.mark.parametrize("flags", [["--fp16"], ["--int8"], ["--int8", "--calib", "imgs"]])
def test_cli_precision_flags_point_to_export(export, no_tensorrt, flags):
    with pytest.raises(ConfigError, match=r"export --precision|--precision fp16") as info:
        (a := _cli([str(export), *flags])).func(a)
    assert "\n" not in str(info.value) and flags[0] in str(info.value)
    assert not (export / "engines").exists()


def test_cli_validation(export, tmp_path, no_tensorrt):
    with pytest.raises(InputError, match="no manifest"):
        (a := _cli([str(tmp_path)])).func(a)
    with pytest.raises(BackendUnavailable, match=r"icnseg\[tensorrt\]") as info:
        (a := _cli([str(export)])).func(a)
    assert "\n" not in str(info.value)


def test_cli_prints_built_then_reused(export, monkeypatch, capsys):
    import icnseg.export.engine as engine

    real = engine.build_engines
    monkeypatch.setattr(engine, "build_engines",
                        lambda *a, **kw: real(*a, env=ENV, build_fn=FakeBuild(), **kw))
    args = _cli([str(export)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "building prm.onnx (fp32, strongly typed)" in out
    assert "built  prm.onnx" in out and "built  icn.onnx" in out
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "reused prm.onnx" in out and "reused icn.onnx" in out and "building" not in out


def test_size_range_needs_a_dynamic_size_export(export, tmp_path):
    from icnseg.export.exporter import checkpoint_to_onnx

    sizes = ((64, 64), (192, 160))
    with pytest.raises(ConfigError, match="--dynamic-size"):
        build_engines(export, env=ENV, build_fn=FakeBuild(), size_range=sizes)
    dyn = checkpoint_to_onnx("default", tmp_path / "dyn", dynamic_size=True).out_dir
    fake = FakeBuild()
    results = build_engines(dyn, env=ENV, build_fn=fake, size_range=sizes)
    icn = next(c for c in fake.calls if c["onnx"].name == "icn.onnx")
    assert icn["size_range"] == sizes and not any(r.reused for r in results)
    # another range is another engine (the profiles are part of the cache key)
    again = build_engines(dyn, env=ENV, build_fn=fake, size_range=((64, 64), (96, 96)))
    assert again[0].reused and not again[1].reused
