#!/usr/bin/env python3
"""Build cpp_ext/<stem>.fatbin for every kernel module with the nvcc on PATH, and
cpp_ext/fatbins.json (nvcc version, archs, sha256 of sources and fatbins).

SASS for icnseg.runtime.cuda_launch.FATBIN_ARCHS plus PTX for the newest of them; warnings
are errors. The runtime loads a fatbin only when fatbins.json says it was built from the
installed sources (tests/runtime/kernels/test_fatbins.py fails CI on a stale one).
    python tools/build_fatbins.py [--nvcc PATH] [--jobs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from icnseg.fileio import write_bytes, write_text
from icnseg.runtime import cuda_launch as cl


def nvcc_release(nvcc: str) -> str:
    """'13.0.88' from ``nvcc --version``."""
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"V(\d+\.\d+\.\d+)", out)
    if not match:
        sys.exit(f"build_fatbins: cannot read the version of {nvcc}:\n{out}")
    return match.group(1)


def build(nvcc: str, stem: str, out_dir: Path) -> bytes:
    """One fatbin's bytes (nvcc -fatbin, every arch, warnings as errors)."""
    gencode = []
    for arch in cl.FATBIN_ARCHS:
        gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    gencode += ["-gencode", f"arch=compute_{cl.PTX_ARCH},code=compute_{cl.PTX_ARCH}"]
    out = out_dir / f"{stem}.fatbin"
    cmd = [nvcc, "-fatbin", "-O3", "-Werror", "all-warnings", *gencode, "-I", str(cl.SRC_DIR),
           "-o", str(out), str(cl.sources(stem)[0])]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"build_fatbins: {stem}.cu failed:\n{res.stderr}")
    return out.read_bytes()


def main() -> int:
    """Build every module's fatbin, then write the index (all or nothing)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvcc", default=cl.nvcc() or "nvcc", help="nvcc to use (default: PATH)")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    args = ap.parse_args()
    release = nvcc_release(args.nvcc)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        blobs = dict(zip(cl.MODULES, pool.map(lambda s: build(args.nvcc, s, Path(tmp)),
                                              cl.MODULES), strict=True))
    modules = {}
    for stem, blob in blobs.items():
        write_bytes(cl.SRC_DIR / f"{stem}.fatbin", blob)
        modules[stem] = {"sources_sha256": cl.sources_sha256(stem),
                         "fatbin_sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        print(f"cpp_ext/{stem}.fatbin  {len(blob) / 1024:.0f} KiB")
    index = {"nvcc": release, "cuda": ".".join(release.split(".")[:2]),
             "archs": list(cl.FATBIN_ARCHS), "ptx": cl.PTX_ARCH, "modules": modules}
    write_text(cl.SRC_DIR / cl.FATBIN_INDEX, json.dumps(index, indent=2) + "\n")
    print(f"cpp_ext/{cl.FATBIN_INDEX}: nvcc {release}, sm_"
          f"{'/'.join(map(str, cl.FATBIN_ARCHS))} + compute_{cl.PTX_ARCH} PTX")
    return 0


if __name__ == "__main__":
    sys.exit(main())
