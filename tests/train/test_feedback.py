"""Stage-2 feedback inputs: the chosen PRMs become 1..T-1 ICN passes over themselves."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from icnseg.models.icn import ICN  # noqa: E402
from icnseg.train.stage2 import _fed_back  # noqa: E402


def test_fed_back_inputs_equal_repeated_icn_passes():
    torch.manual_seed(0)
    icn = ICN(encoder="tiny").eval()
    x = torch.randn(6, 3, 32, 32)
    r = torch.rand(6, 1, 32, 32)
    out = _fed_back(icn, x, r, np.random.default_rng(3), share=0.7, iterations=3)
    # replay the same draws, then compute each input by an explicit loop
    rng = np.random.default_rng(3)
    chosen = np.flatnonzero(rng.random(6) < 0.7)
    passes = rng.integers(1, 3, len(chosen))
    assert len(chosen) > 0
    with torch.no_grad():
        for i in range(6):
            want = r[i : i + 1]
            if i in chosen:
                for _ in range(int(passes[list(chosen).index(i)])):
                    want = icn(x[i : i + 1], want)
            torch.testing.assert_close(out[i : i + 1], want, atol=1e-5, rtol=1e-5)
