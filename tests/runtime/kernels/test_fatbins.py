"""The committed fatbins were built from the committed kernel sources (a stale one fails CI)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

CPP_EXT = Path(__file__).resolve().parents[3] / "cpp_ext"
INDEX = json.loads((CPP_EXT / "fatbins.json").read_text())


@pytest.mark.parametrize("cu", sorted(p.stem for p in CPP_EXT.glob("*.cu")))
def test_fatbin_matches_its_sources(cu: str) -> None:
    """Every .cu has a fatbin whose recorded source and fatbin sha256 match the files
    (rebuild with `python tools/build_fatbins.py` after editing a kernel)."""
    entry = INDEX["modules"][cu]
    digest = hashlib.sha256()
    for name in (f"{cu}.cu", "common.cuh"):
        digest.update(name.encode() + b"\0" + (CPP_EXT / name).read_bytes() + b"\0")
    assert entry["sources_sha256"] == digest.hexdigest(), \
        f"cpp_ext/{cu}.fatbin is stale: run python tools/build_fatbins.py"
    blob = (CPP_EXT / f"{cu}.fatbin").read_bytes()
    assert entry["fatbin_sha256"] == hashlib.sha256(blob).hexdigest()


def test_fatbins_carry_sass_for_every_arch_and_ptx() -> None:
    """cuobjdump (when installed) lists SASS for sm_75..sm_90 and PTX in each fatbin."""
    import shutil
    import subprocess

    from icnseg.runtime.cuda_launch import FATBIN_ARCHS, PTX_ARCH

    assert INDEX["archs"] == list(FATBIN_ARCHS) and INDEX["ptx"] == PTX_ARCH
    tool = shutil.which("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump not found")
    for stem in INDEX["modules"]:
        out = subprocess.run([tool, "--list-elf", "--list-ptx", str(CPP_EXT / f"{stem}.fatbin")],
                             capture_output=True, text=True, check=True).stdout
        for arch in FATBIN_ARCHS:
            assert f"sm_{arch}" in out, f"{stem}.fatbin lacks sm_{arch} SASS"
        assert ".ptx" in out, f"{stem}.fatbin lacks PTX"
