"""The README's Python example runs as written (on the bundled samples)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 - the project's own README
    lines = capsys.readouterr().out.splitlines()
    assert lines, "the example printed no instance"
    for line in lines:
        name, score, *_ = line.split(" ", 2)
        assert name in ("circle", "square", "triangle", "star", "cross") and 0 < float(score) <= 1
