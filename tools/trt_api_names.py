"""Names a ``tensorrt-*-bindings`` wheel defines, read from its binary (no libnvinfer needed).

The bindings cannot be imported without TensorRT's libraries, but every class, enum member,
method and property name pybind11 registers is a NUL-terminated string in ``tensorrt.so``.
This script writes the strings that are one Python identifier, plus the names the wheel's
``__init__.py`` defines in Python, sorted, one per line; ``tests/export/test_trt_api_surface.py``
checks every TensorRT name the code uses against them. The linker may store a name as the
tail of a longer one (``INT8`` inside ``UINT8``), so the test accepts a name ending an entry.

    pip download --no-deps --python-version 3.10 --platform manylinux_2_17_x86_64 \\
        --only-binary=:all: 'tensorrt-cu12-bindings==10.3.*' -d wheels
    python tools/trt_api_names.py wheels/tensorrt_cu12_bindings-10.3.0-*.whl \\
        --out tests/export/data/trt_names_10.3.txt
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import zipfile
from pathlib import Path

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{1,79}")
MANGLED = re.compile(rb"_Z|__")  # C++ symbols and dunder internals are not API names


def names_in_binary(data: bytes) -> list[str]:
    """Sorted unique NUL-terminated strings of ``data`` that are exactly one identifier."""
    found = set()
    for chunk in data.split(b"\0"):
        if IDENT.fullmatch(chunk) and not MANGLED.match(chunk):
            found.add(chunk.decode("ascii"))
    return sorted(found)


def bindings_binary(wheel: Path) -> bytes:
    """The bytes of the ``tensorrt*.so`` extension inside a bindings wheel."""
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist()
                   if re.search(r"/tensorrt[a-z_]*\.(so|pyd)$|/tensorrt[a-z_]*\..*\.so$", n)]
        if not members:
            raise SystemExit(f"{wheel}: no tensorrt extension module inside (a -libs stub?)")
        return zf.read(members[0])


def python_names(wheel: Path) -> list[str]:
    """Top-level names the wheel's ``__init__.py`` defines (``nptype``, ``__version__``...)."""
    with zipfile.ZipFile(wheel) as zf:
        inits = [n for n in zf.namelist() if re.fullmatch(r"tensorrt[a-z_]*/__init__\.py", n)]
        trees = [ast.parse(zf.read(n)) for n in inits]
    found = set()
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                found.add(node.name)
            elif isinstance(node, ast.Assign):
                found.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    """Write the identifier list of one wheel."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    names = sorted(set(names_in_binary(bindings_binary(args.wheel)))
                   | set(python_names(args.wheel)))
    header = f"# identifiers in {args.wheel.name} (tools/trt_api_names.py)\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(names) + "\n", encoding="ascii")
    print(f"{args.out}: {len(names)} names", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
