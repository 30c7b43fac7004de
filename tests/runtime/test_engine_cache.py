"""The TensorRT engine cache without TensorRT: keys, sidecars, corruption, staleness, reuse."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from icnseg.artifacts.engine_cache import (
    EngineSpec,
    TrtEnv,
    build_cached,
    cache_key,
    check_entry,
    entry_paths,
    find_engine,
    prune_other_sources,
    read_sidecar,
    timing_cache_path,
)
from icnseg.errors import ConfigError, ExportError, InputError

ENV = TrtEnv("tensorrt", "10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0")
SHA = "a" * 64
PROFILES = {"prm": ((1, 1, 64, 64), (8, 1, 64, 64), (32, 1, 64, 64))}


class Builds:
    """A stand-in build step for the cache logic: writes deterministic bytes, counts calls."""

    def __init__(self, payload: bytes = b"engine-bytes") -> None:
        self.calls: list[tuple[Path, Path, Path]] = []
        self.payload = payload

    def __call__(self, onnx: Path, engine: Path, calib: Path) -> None:
        self.calls.append((onnx, engine, calib))
        engine.write_bytes(self.payload + onnx.name.encode())


@pytest.fixture()
def export(tmp_path) -> Path:
    """A directory with an 'ONNX file' (bytes only; the cache never parses it)."""
    (tmp_path / "icn.onnx").write_bytes(b"onnx")
    return tmp_path


def _build(export: Path, env=ENV, spec=None, builds=None, force=False, sha=SHA):
    spec = spec or EngineSpec(profiles=PROFILES)
    return build_cached(export, "icn", export / "icn.onnx", sha, env, spec,
                        builds or Builds(), force)


def test_key_depends_on_every_fact():
    base = cache_key(SHA, ENV, EngineSpec())
    assert base == cache_key(SHA, TrtEnv(*dataclasses.astuple(ENV)), EngineSpec())
    assert len(base) == 16 and int(base, 16) >= 0
    variants = [
        cache_key("b" * 64, ENV, EngineSpec()),
        cache_key(SHA, dataclasses.replace(ENV, version="10.9.0.34"), EngineSpec()),
        cache_key(SHA, dataclasses.replace(ENV, gpu="Orin"), EngineSpec()),
        cache_key(SHA, dataclasses.replace(ENV, compute_capability="8.7"), EngineSpec()),
        cache_key(SHA, dataclasses.replace(ENV, flavour="tensorrt_rtx"), EngineSpec()),
        cache_key(SHA, ENV, EngineSpec(precision="fp16")),
        cache_key(SHA, ENV, EngineSpec(precision="fp16", dla_core=0)),
        cache_key(SHA, ENV, EngineSpec(workspace_mb=512)),
        cache_key(SHA, ENV, EngineSpec(profiles=PROFILES)),
        cache_key(SHA, ENV, EngineSpec(precision="int8", calib_sha256="c" * 64)),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_spec_checks():
    with pytest.raises(ConfigError, match="--calib"):
        EngineSpec(precision="int8").check()
    with pytest.raises(ConfigError, match="FP16 or INT8"):
        EngineSpec(dla_core=0).check()
    with pytest.raises(ConfigError, match="precision"):
        EngineSpec(precision="fp8").check()
    with pytest.raises(ConfigError, match="workspace"):
        EngineSpec(workspace_mb=0).check()


def test_sidecar_round_trip_and_reuse(export):
    builds = Builds()
    first = _build(export, builds=builds)
    assert not first.reused and len(builds.calls) == 1
    paths = entry_paths(export, "icn", cache_key(SHA, ENV, EngineSpec(profiles=PROFILES)))
    assert first.path == paths["engine"] and paths["sidecar"].is_file()
    assert builds.calls[0][2] == paths["calib"]  # the calibration cache sits next to the engine
    rec = read_sidecar(paths["sidecar"])
    assert rec["onnx_sha256"] == SHA and rec["env"] == dataclasses.asdict(ENV)
    assert rec["spec"]["precision"] == "fp32" and rec["engine_bytes"] == first.bytes
    assert rec["spec"]["profiles"]["prm"][2] == [32, 1, 64, 64]
    assert check_entry(paths["sidecar"], ENV, SHA).ok
    again = _build(export, builds=builds)
    assert again.reused and again.path == first.path and len(builds.calls) == 1
    forced = _build(export, builds=builds, force=True)
    assert not forced.reused and forced.rebuilt_because == "--force" and len(builds.calls) == 2
    assert find_engine(export, "icn", SHA, ENV) == first.path


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "sidecar"])
def test_damaged_entry_is_refused_then_rebuilt(export, damage):
    first = _build(export)
    sidecar = first.path.with_suffix(".json")
    data = first.path.read_bytes()
    if damage == "truncate":
        first.path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        first.path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "delete":
        first.path.unlink()
    else:
        sidecar.write_text("{not json")
    reason = {"truncate": "truncated", "flip": "corrupt", "delete": "missing",
              "sidecar": "unreadable"}[damage]
    chk = check_entry(sidecar, ENV, SHA)
    assert not chk.ok and reason in chk.reason
    with pytest.raises(InputError, match=rf"{reason}.*icnseg build-engine {export}"):
        find_engine(export, "icn", SHA, ENV)
    builds = Builds()
    again = _build(export, builds=builds)
    assert not again.reused and len(builds.calls) == 1 and reason in again.rebuilt_because
    assert check_entry(sidecar, ENV, SHA).ok
    assert find_engine(export, "icn", SHA, ENV) == again.path


def test_other_tensorrt_or_gpu_is_stale(export):
    old = _build(export, env=dataclasses.replace(ENV, version="10.3.0.26"))
    for env in (ENV, dataclasses.replace(ENV, version="10.3.0.26", gpu="Orin")):
        chk = check_entry(old.path.with_suffix(".json"), env, SHA)
        assert not chk.ok and "stale" in chk.reason and "10.3.0.26" in chk.reason
        with pytest.raises(InputError, match=r"stale: built with TensorRT 10\.3\.0\.26"):
            find_engine(export, "icn", SHA, env)
    new = _build(export)  # another key: built next to the old one, which stays for its machine
    assert not new.reused and new.path != old.path and old.path.is_file()
    assert find_engine(export, "icn", SHA, ENV) == new.path


def test_engine_of_another_onnx_is_not_used_then_pruned(export):
    old = _build(export, sha="b" * 64)
    with pytest.raises(InputError, match="built from another icn.onnx"):
        find_engine(export, "icn", SHA, ENV)
    new = _build(export)
    (export / "engines" / "icn.junk.json").write_text("{}")  # not ours: left alone
    removed = prune_other_sources(export, "icn", SHA)
    assert set(removed) == {old.path, old.path.with_suffix(".json")}
    assert new.path.is_file() and (export / "engines" / "icn.junk.json").is_file()
    assert find_engine(export, "icn", SHA, ENV) == new.path


def test_find_engine_precision_choice(export):
    with pytest.raises(InputError, match=r"no valid TensorRT engine for icn\.onnx.*build-engine"):
        find_engine(export, "icn", SHA, ENV)
    fp32 = _build(export)
    fp16 = _build(export, spec=EngineSpec(precision="fp16", profiles=PROFILES))
    assert find_engine(export, "icn", SHA, ENV, "fp32") == fp32.path
    assert find_engine(export, "icn", SHA, ENV, "fp16") == fp16.path
    assert find_engine(export, "icn", SHA, ENV) == fp16.path  # the newest
    with pytest.raises(InputError, match=r"no valid int8 .*build-engine"):
        find_engine(export, "icn", SHA, ENV, "int8")
    with pytest.raises(ConfigError):
        find_engine(export, "icn", SHA, ENV, "fp64")


def test_failed_build_leaves_nothing(export):
    def boom(onnx, engine, calib):
        engine.write_bytes(b"partial")
        raise ExportError("builder failed")

    with pytest.raises(ExportError, match="builder failed"):
        _build(export, builds=boom)
    assert not any((export / "engines").glob("icn.*"))

    def nothing(onnx, engine, calib):
        pass

    with pytest.raises(ExportError, match="wrote nothing"):
        _build(export, builds=nothing)


def test_sidecar_must_be_ours(export):
    first = _build(export)
    sidecar = first.path.with_suffix(".json")
    rec = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**rec, "format": "other"}))
    with pytest.raises(InputError, match="not an icnseg engine sidecar"):
        read_sidecar(sidecar)
    sidecar.write_text(json.dumps({**rec, "version": 99}))
    assert "version 99" in check_entry(sidecar, ENV, SHA).reason


def test_timing_cache_is_per_environment(tmp_path):
    a = timing_cache_path(tmp_path, ENV)
    assert a.parent == tmp_path / "engines" and a.suffix == ".cache"
    assert a == timing_cache_path(tmp_path, ENV)
    assert a != timing_cache_path(tmp_path, dataclasses.replace(ENV, gpu="Orin"))
