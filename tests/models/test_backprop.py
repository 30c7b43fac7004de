"""Peak response maps: both backward rules against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from icnseg.errors import ConfigError
from icnseg.models.prm import PRMClassifier, backprop_rule, peak_response_maps


@pytest.fixture(scope="module")
def tiny(randomise_bn):
    torch.manual_seed(0)
    model = PRMClassifier("tiny", 3)
    randomise_bn(model, seed=0)
    return model.eval()


PEAKS = np.array([[0, 1, 2, 0.5], [2, 3, 3, 0.2], [1, 0, 0, 0.1], [0, 1, 2, 0.5]], np.float32)


def test_gradient_rule_equals_autograd_per_peak(tiny):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 32, 32)
    got = peak_response_maps(tiny, x, PEAKS, rule="gradient")
    assert got.shape == (4, 32, 32)
    for k, (c, y, xx, _) in enumerate(PEAKS.astype(int)):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(tiny(xi)[0, c, y, xx], xi)
        want = g[0].sum(0).clamp(min=0)
        torch.testing.assert_close(got[k], want, rtol=1e-4, atol=1e-6 * want.abs().max())


def test_prm_rule_batched_equals_single(tiny):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 32, 32)
    got = peak_response_maps(tiny, x, PEAKS, rule="prm")
    assert got.min() >= 0 and got.max() > 0
    for k in range(len(PEAKS)):
        one = peak_response_maps(tiny, x, PEAKS[k : k + 1], rule="prm")[0]
        torch.testing.assert_close(got[k], one, rtol=1e-4, atol=1e-5 * one.max())
    torch.testing.assert_close(got[0], got[3])


def test_prm_rule_batched_equals_single_resnet50(randomise_bn):
    torch.manual_seed(3)
    model = PRMClassifier("resnet50", 2)
    randomise_bn(model, seed=1)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    peaks = np.array([[0, 0, 1, 1.0], [1, 1, 0, 1.0]], np.float32)
    for rule in ("gradient", "prm"):
        got = peak_response_maps(model, x, peaks, rule=rule)
        for k in range(2):
            one = peak_response_maps(model, x, peaks[k : k + 1], rule=rule)[0]
            torch.testing.assert_close(got[k], one, rtol=1e-4, atol=1e-5 * one.max())


def _conv_loops(u: np.ndarray, w: np.ndarray, b: np.ndarray | None, s: int, p: int) -> np.ndarray:
    """Direct convolution (cross-correlation) by loops: u [C,H,W], w [O,C,k,k]."""
    c_n, h, wd = u.shape
    o_n, _, k, _ = w.shape
    up = np.zeros((c_n, h + 2 * p, wd + 2 * p))
    up[:, p : p + h, p : p + wd] = u
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    out = np.zeros((o_n, oh, ow))
    for o in range(o_n):
        for i in range(oh):
            for j in range(ow):
                out[o, i, j] = (up[:, i * s : i * s + k, j * s : j * s + k] * w[o]).sum()
                if b is not None:
                    out[o, i, j] += b[o]
    return out


def _prm_back_loops(u: np.ndarray, w: np.ndarray, g: np.ndarray, s: int, p: int) -> np.ndarray:
    """The prm rule by hand: Um*(sum over outputs touching each input of W+ * g/Z)."""
    um = u - u.min()
    wp = np.maximum(w, 0)
    z = _conv_loops(um, wp, None, s, p)
    ratio = np.where(z >= 1e-10, g / (np.abs(z) + 1e-10), 0.0)
    c_n, h, wd = u.shape
    o_n, _, k, _ = w.shape
    back = np.zeros((c_n, h, wd))
    for o in range(o_n):
        for i in range(z.shape[1]):
            for j in range(z.shape[2]):
                for ky in range(k):
                    for kx in range(k):
                        y, x = i * s + ky - p, j * s + kx - p
                        if 0 <= y < h and 0 <= x < wd:
                            back[:, y, x] += ratio[o, i, j] * wp[o, :, ky, kx]
    return um * back


def test_prm_rule_equals_hand_formula():
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2, padding=1)
    ).eval()
    x = torch.randn(1, 2, 7, 7)
    peaks = np.array([[1, 1, 2, 0.0], [2, 3, 0, 0.0], [0, 2, 2, 0.0]], np.float32)
    got = peak_response_maps(net, x, peaks, rule="prm").numpy()
    w1, b1 = (t.detach().double().numpy() for t in (net[0].weight, net[0].bias))
    w2 = net[2].weight.detach().double().numpy()
    x0 = x[0].double().numpy()
    a1 = _conv_loops(x0, w1, b1, 1, 1)
    u2 = np.maximum(a1, 0)
    for k, (c, y, xx, _) in enumerate(peaks.astype(int)):
        seed = np.zeros((3, 4, 4))
        seed[c, y, xx] = 1.0
        g_u2 = _prm_back_loops(u2, w2, seed, 2, 1)
        g_a1 = g_u2 * (a1 > 0)
        g_x = _prm_back_loops(x0, w1, g_a1, 1, 1)
        want = np.maximum(g_x.sum(0), 0)
        assert want.max() > 0
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-6 * want.max())


def test_rule_keeps_forward_and_restores_state(tiny):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = tiny(x)
        with backprop_rule(tiny, "prm"):
            inside = tiny(x)
    torch.testing.assert_close(inside, ref)
    assert all("forward" not in m.__dict__ for m in tiny.modules())
    tiny.train()
    peak_response_maps(tiny, x[:1], np.array([[0, 1, 1, 1.0]]))
    assert tiny.training
    tiny.eval()


def test_errors_and_empty(tiny):
    x = torch.randn(1, 3, 16, 16)
    assert peak_response_maps(tiny, x, np.zeros((0, 4), np.float32)).shape == (0, 16, 16)
    with pytest.raises(ConfigError):
        peak_response_maps(tiny, x, PEAKS, rule="guided")
    with pytest.raises(ConfigError):
        peak_response_maps(tiny, x, np.array([[0, 5, 0, 1.0]]))  # crm is 2x2
    with pytest.raises(ConfigError):
        peak_response_maps(tiny, torch.randn(2, 3, 16, 16), PEAKS)
    with pytest.raises(ConfigError), backprop_rule(tiny, "lrp"):
        pass


def test_rules_in_concurrent_threads_give_their_own_maps(tiny):
    """Threads mixing both rules: each call equals its single-threaded result, no patch left."""
    import threading

    torch.manual_seed(3)
    x = torch.randn(1, 3, 32, 32)
    want = {r: peak_response_maps(tiny, x, PEAKS, rule=r) for r in ("prm", "gradient")}
    assert not torch.equal(want["prm"], want["gradient"])
    wrong: list[str] = []

    def work(rule: str) -> None:
        for _ in range(10):
            if not torch.equal(peak_response_maps(tiny, x, PEAKS, rule=rule), want[rule]):
                wrong.append(rule)

    threads = [threading.Thread(target=work, args=(r,)) for r in ("prm", "gradient") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert not any("forward" in m.__dict__ for m in tiny.modules())
