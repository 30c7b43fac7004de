"""The TensorRT engine cache of an export directory: keys, sidecars, validity (no TensorRT).

Layout: ``<export_dir>/engines/<role>.<key>.engine`` with a JSON sidecar ``<role>.<key>.json``
(and, for INT8, the calibration cache ``<role>.<key>.calib``). The key is the first 16 hex
digits of the sha256 of everything that changes the engine bytes: the ONNX file's sha256, the
TensorRT flavour and version, the GPU name and compute capability, precision, DLA core,
workspace limit, optimisation profiles and (INT8) the calibration images' digest. The sidecar
records those facts plus the engine's own sha256 and size, so an engine is loaded only when
its bytes are intact and it was built by this TensorRT for this GPU; anything else is rebuilt
by ``icnseg build-engine`` and refused, with that command in the message, at load time.
Engines for other GPUs or TensorRT versions are left in place (an export directory may be
shared between machines); each machine finds its own by key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icnseg.artifacts.manifest import PRECISIONS, sha256_file
from icnseg.errors import ConfigError, ExportError, InputError
from icnseg.fileio import atomic_path, write_text

FORMAT = "icnseg-engine"
FORMAT_VERSION = 1
ENGINE_DIR = "engines"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class TrtEnv:
    """What a serialised engine is tied to: the TensorRT build and the GPU."""

    flavour: str  # "tensorrt" or "tensorrt_rtx"
    version: str  # e.g. "10.8.0.43"
    gpu: str  # device name, e.g. "NVIDIA H100 80GB HBM3" or "Orin"
    compute_capability: str  # "9.0", "8.7", ...

    def describe(self) -> str:
        """'TensorRT 10.8.0 on NVIDIA H100 (sm 9.0)'."""
        name = "TensorRT-RTX" if self.flavour == "tensorrt_rtx" else "TensorRT"
        return f"{name} {self.version} on {self.gpu} (sm {self.compute_capability})"


@dataclass(frozen=True)
class EngineSpec:
    """The build settings that change an engine's bytes."""

    precision: str = "fp32"  # fp32 | fp16 | int8: the export's (strongly typed graph)
    dla_core: int | None = None  # Jetson DLA core, GPU fallback on; None = GPU only
    workspace_mb: int | None = None  # builder workspace limit; None = TensorRT's default
    profiles: Mapping[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)
    calib_sha256: str | None = None  # digest of the INT8 calibration images

    def check(self) -> EngineSpec:
        """ConfigError on an impossible combination; returns self."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of "
                              f"{', '.join(PRECISIONS)}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError(f"--dla {self.dla_core}: a DLA core index is >= 0")
        if self.dla_core is not None and self.precision == "fp32":
            raise ConfigError("--dla: DLA runs FP16 or INT8 only; export with "
                              "--precision fp16 or int8")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise ConfigError(f"--workspace {self.workspace_mb}: give a size in MB > 0")
        if self.precision == "int8" and not self.calib_sha256:
            raise ConfigError("an int8 export records its calibration set; this manifest "
                              "has none: export again with --precision int8 --calib IMAGES")
        return self


@dataclass(frozen=True)
class EntryCheck:
    """Whether a cache entry may be loaded; ``reason`` says why not."""

    ok: bool
    reason: str = ""
    record: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BuildResult:
    """One engine of ``build-engine``: where it is and whether it was built or reused."""

    role: str
    path: Path
    reused: bool
    seconds: float
    bytes: int
    precision: str
    rebuilt_because: str = ""  # why an existing entry was not reused ("" = none existed)


def _canonical(value: Any) -> Any:
    """JSON-ready form: tuples -> lists, mappings sorted by key."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def cache_key(onnx_sha256: str, env: TrtEnv, spec: EngineSpec) -> str:
    """16 hex digits identifying one (ONNX file, TensorRT, GPU, build settings) combination."""
    facts = {"onnx_sha256": onnx_sha256, "env": dataclasses.asdict(env),
             "spec": dataclasses.asdict(spec), "format": FORMAT_VERSION}
    blob = json.dumps(_canonical(facts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def engine_dir(export_dir: str | os.PathLike) -> Path:
    """``<export_dir>/engines``."""
    return Path(export_dir) / ENGINE_DIR


def entry_paths(export_dir: str | os.PathLike, role: str, key: str) -> dict[str, Path]:
    """{"engine", "sidecar", "calib"} paths of the entry ``role``/``key``."""
    base = engine_dir(export_dir)
    return {kind: base / f"{role}.{key}.{suffix}"
            for kind, suffix in (("engine", "engine"), ("sidecar", "json"), ("calib", "calib"))}


def timing_cache_path(export_dir: str | os.PathLike, env: TrtEnv) -> Path:
    """The default timing cache, one per TensorRT build + GPU (it is specific to both)."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(env), sort_keys=True).encode())
    return engine_dir(export_dir) / f"timing.{digest.hexdigest()[:12]}.cache"


def make_sidecar(role: str, onnx_path: Path, onnx_sha256: str, env: TrtEnv, spec: EngineSpec,
                 engine_path: Path, seconds: float) -> dict[str, Any]:
    """The sidecar record of a freshly written engine (hashes the engine file)."""
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "role": role,
        "key": cache_key(onnx_sha256, env, spec),
        "onnx": onnx_path.name, "onnx_sha256": onnx_sha256,
        "env": dataclasses.asdict(env), "spec": _canonical(dataclasses.asdict(spec)),
        "engine": engine_path.name, "engine_sha256": sha256_file(engine_path),
        "engine_bytes": engine_path.stat().st_size,
        "built_at": time.time(), "build_seconds": round(float(seconds), 3),
    }


def write_sidecar(path: Path, record: Mapping[str, Any]) -> None:
    """Atomically write a sidecar."""
    write_text(path, json.dumps(_canonical(record), indent=2, sort_keys=True) + "\n")


def read_sidecar(path: Path) -> dict[str, Any]:
    """Load a sidecar; InputError naming it when unreadable or not an engine sidecar."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable engine sidecar ({exc})") from exc
    needed = ("onnx_sha256", "env", "spec", "engine", "engine_sha256", "engine_bytes")
    if (not isinstance(record, dict) or record.get("format") != FORMAT
            or any(k not in record for k in needed) or not isinstance(record["env"], dict)):
        raise InputError(f"{path}: not an icnseg engine sidecar")
    if record.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: engine sidecar version {record.get('version')} "
                         f"is not supported (this icnseg writes {FORMAT_VERSION})")
    return record


def check_entry(sidecar: Path, env: TrtEnv, onnx_sha256: str | None = None) -> EntryCheck:
    """May the engine of ``sidecar`` be loaded here? Checks source, TensorRT, GPU and bytes."""
    try:
        record = read_sidecar(sidecar)
    except InputError as exc:
        return EntryCheck(False, str(exc).split(": ", 1)[-1])
    if onnx_sha256 is not None and record["onnx_sha256"] != onnx_sha256:
        return EntryCheck(False, f"built from another {record.get('onnx', 'ONNX file')} "
                                 f"(sha256 {record['onnx_sha256'][:12]}...)", record)
    try:
        built = TrtEnv(**record["env"])
    except TypeError:
        return EntryCheck(False, "sidecar has no valid TensorRT/GPU record", record)
    if built != env:
        return EntryCheck(False, f"stale: built with {built.describe()}; this is "
                                 f"{env.describe()}", record)
    engine = Path(sidecar).parent / record["engine"]
    if not engine.is_file():
        return EntryCheck(False, f"engine file {engine.name} is missing", record)
    size = engine.stat().st_size
    if size != record["engine_bytes"]:
        return EntryCheck(False, f"{engine.name} is truncated or overwritten ({size} bytes, "
                                 f"{record['engine_bytes']} recorded)", record)
    if sha256_file(engine) != record["engine_sha256"]:
        return EntryCheck(False, f"{engine.name} is corrupt (sha256 differs from its sidecar)",
                          record)
    return EntryCheck(True, "", record)


def sidecar_of(engine_path: str | os.PathLike) -> Path:
    """The sidecar path next to an engine file."""
    return Path(engine_path).with_suffix(".json")


def _rebuild_hint(export_dir: Path, precision: str | None) -> str:
    """How to get an engine (its precision is the export's: icnseg export --precision)."""
    return f"build it with `icnseg build-engine {export_dir}`"


def find_engine(export_dir: str | os.PathLike, role: str, onnx_sha256: str, env: TrtEnv,
                precision: str | None = None) -> Path:
    """The engine for ``role`` valid here (newest if several); InputError saying how to build."""
    export_dir = Path(export_dir)
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    found, rejected = [], []
    for sidecar in sorted(engine_dir(export_dir).glob(f"{role}.*.json")):
        chk = check_entry(sidecar, env, onnx_sha256)
        if not chk.ok:
            rejected.append(f"{sidecar.name}: {chk.reason}")
            continue
        if precision is None or chk.record["spec"].get("precision") == precision:
            found.append((float(chk.record.get("built_at", 0.0)), sidecar, chk.record))
    if found:
        _, sidecar, record = max(found, key=lambda t: (t[0], t[1].name))
        return sidecar.parent / record["engine"]
    what = f"{precision} " if precision else ""
    why = f" (not usable: {'; '.join(rejected)})" if rejected else ""
    raise InputError(f"{engine_dir(export_dir)}: no valid {what}TensorRT engine for {role}.onnx "
                     f"for {env.describe()}{why}; {_rebuild_hint(export_dir, precision)}")


def prune_other_sources(export_dir: str | os.PathLike, role: str, onnx_sha256: str) -> list[Path]:
    """Delete ``role``'s entries built from another ONNX file (re-exported: never used again)."""
    removed = []
    for sidecar in sorted(engine_dir(export_dir).glob(f"{role}.*.json")):
        try:
            record = read_sidecar(sidecar)
        except InputError:
            continue  # not ours to judge
        if record["onnx_sha256"] == onnx_sha256:
            continue
        for path in (sidecar.parent / record["engine"], sidecar, sidecar.with_suffix(".calib")):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def build_cached(export_dir: str | os.PathLike, role: str, onnx_path: Path, onnx_sha256: str,
                 env: TrtEnv, spec: EngineSpec,
                 build_fn: Callable[[Path, Path, Path], None], force: bool = False
                 ) -> BuildResult:
    """Reuse the valid entry for this key, else ``build_fn(onnx, engine_tmp, calib_cache)``.

    The engine is written atomically, then its sidecar; a crash in between leaves a sidecar
    whose hash does not match, which the next build or load treats as corrupt.
    """
    spec.check()
    key = cache_key(onnx_sha256, env, spec)
    paths = entry_paths(export_dir, role, key)
    why = ""
    if paths["sidecar"].exists() or paths["engine"].exists():
        chk = check_entry(paths["sidecar"], env, onnx_sha256)
        if chk.ok and not force:
            return BuildResult(role, paths["engine"], True, 0.0,
                               int(chk.record["engine_bytes"]), spec.precision)
        why = "--force" if chk.ok else chk.reason
    t0 = time.perf_counter()
    with atomic_path(paths["engine"]) as tmp:
        build_fn(onnx_path, tmp, paths["calib"])
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise ExportError(f"{onnx_path}: the engine build wrote nothing")
    seconds = time.perf_counter() - t0
    record = make_sidecar(role, onnx_path, onnx_sha256, env, spec, paths["engine"], seconds)
    write_sidecar(paths["sidecar"], record)
    return BuildResult(role, paths["engine"], False, seconds, int(record["engine_bytes"]),
                       spec.precision, why)
