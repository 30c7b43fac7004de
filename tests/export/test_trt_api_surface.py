"""Every TensorRT name the code uses exists in the 10.3 (JetPack 6) and 11.4 Python bindings.

The name lists come from the bindings wheels themselves (``tools/trt_api_names.py``): this
is the check that catches a removed API (``BuilderFlag.FP16``, ``int8_calibrator`` in 11.x)
on a machine without TensorRT or a GPU.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
VERSIONS = ("10.3", "11.4")
# Modules that talk to TensorRT, and the local names they give TensorRT objects.
MODULES = ("export/engine.py", "icnseg/artifacts/trt_env.py", "runtime/tensorrt_backend.py")
TRT_OBJECTS = {"builder", "config", "network", "parser", "profile", "layer", "engine",
               "context", "runtime", "cache", "inspector"}
PYTHON_OBJECT = {"__init__", "__class__"}  # attributes every Python object has


def _chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """(root name, attribute names) of ``root.a.b.c``, or None when the root is no Name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, attrs[::-1]) if isinstance(node, ast.Name) else None


def used_names() -> dict[str, set[str]]:
    """{name: modules} for every attribute of ``trt`` or of a TensorRT object in MODULES."""
    used: dict[str, set[str]] = {}
    for rel in MODULES:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            got = _chain(node) if isinstance(node, ast.Attribute) else None
            if got is None:
                continue
            root, attrs = got
            if root == "trt":
                names = attrs
            elif root == "self" and attrs and attrs[0] in TRT_OBJECTS:
                names = attrs[1:2]
            elif root in TRT_OBJECTS:
                names = attrs[:1]
            else:
                continue
            for n in names:  # dunders (trt.__name__, __version__) are Python's, not the API
                if n not in PYTHON_OBJECT and not (n.startswith("__") and n.endswith("__")):
                    used.setdefault(n, set()).add(rel)
    return used


def defined(version: str) -> list[str]:
    """The identifier list of one bindings version."""
    lines = (DATA / f"trt_names_{version}.txt").read_text(encoding="ascii").splitlines()
    return [s for s in lines if s and not s.startswith("#")]


def test_the_scan_sees_the_code():
    used = used_names()
    for name in ("Builder", "OnnxParser", "create_network", "NetworkDefinitionCreationFlag",
                 "deserialize_cuda_engine", "execute_async_v3", "set_tensor_address"):
        assert name in used, name


@pytest.mark.parametrize("version", VERSIONS)
def test_every_used_name_exists(version):
    names = defined(version)
    exact = set(names)
    missing = sorted(n for n in used_names()
                     if n not in exact and not any(s.endswith(n) for s in names))
    assert not missing, f"TensorRT {version} bindings lack: {', '.join(missing)}"


def test_the_lists_know_what_11_removed():
    """The data itself: 11.x dropped the implicit-precision API that 10.3 still has."""
    v10, v11 = set(defined("10.3")), set(defined("11.4"))
    for name in ("int8_calibrator", "IInt8EntropyCalibrator2", "OBEY_PRECISION_CONSTRAINTS",
                 "set_calibration_profile", "FP16"):
        assert name in v10 and name not in v11, name
    assert "STRONGLY_TYPED" in v10 and "STRONGLY_TYPED" in v11
