"""The research scripts are not installed: import them from the source checkout."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)  # appended: icnseg itself still comes from the installed package
