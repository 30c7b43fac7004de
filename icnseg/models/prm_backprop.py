"""Peak response maps: one batched backward from K one-hot peak seeds to the input image.

Two backward rules (DESIGN.md, "The method in one screen"):

* ``gradient``: the plain chain rule (paper Eq. 2).
* ``prm``: the rule of the original PRM code, applied at every ``nn.Conv2d`` while
  ``backprop_rule(model, "prm")`` is active; every other layer (BN, ReLU, pooling, residual add)
  keeps its ordinary gradient. The formula lives in ``prm_conv_input_grad`` only, so the ONNX
  export can rebuild it from explicit ops.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icnseg.errors import ConfigError
from icnseg.settings import PRM_EPS, check_rule

_RULE_LOCK = threading.RLock()  # held while a backprop_rule block runs (see there)


def prm_conv_input_grad(
    u: torch.Tensor,
    weight: torch.Tensor,
    grad_out: torch.Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> torch.Tensor:
    """Return the ``prm``-rule input gradient of one conv (input ``u``, weights ``weight``).

    Um = U - min(U) (global min over C,H,W of each sample, so a batch equals single runs),
    W+ = relu(W), Z = conv(Um, W+) without bias,
    grad_in = Um * conv_transpose(g / (|Z| + 1e-10) * [Z >= 1e-10], W+).
    The transposed conv is the exact adjoint of the forward conv (output_padding included).
    """
    um = u - u.amin(dim=(1, 2, 3), keepdim=True)
    w_pos = weight.clamp(min=0)
    z = F.conv2d(um, w_pos, None, stride, padding, dilation, groups)
    s = torch.where(z >= PRM_EPS, grad_out / (z.abs() + PRM_EPS), torch.zeros_like(z))
    back = torch.nn.grad.conv2d_input(u.shape, w_pos, s, stride, padding, dilation, groups)
    return um * back


class _PRMConv(torch.autograd.Function):
    """Conv2d whose forward is unchanged and whose input gradient follows the ``prm`` rule."""

    # forward/setup_context split so vmap can batch the backward over K seeds
    generate_vmap_rule = True

    @staticmethod
    def forward(u, weight, bias, stride, padding, dilation, groups):  # noqa: D102
        return F.conv2d(u, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        u, weight, _, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(u, weight)
        ctx.conf = (stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        u, weight = ctx.saved_tensors
        grad_u = None
        if ctx.needs_input_grad[0]:
            grad_u = prm_conv_input_grad(u, weight, grad_out, *ctx.conf)
        return grad_u, None, None, None, None, None, None


def _prm_forward(self: nn.Conv2d, u: torch.Tensor) -> torch.Tensor:
    """Replacement ``Conv2d.forward`` routing through ``_PRMConv``."""
    return _PRMConv.apply(
        u, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
    )


@contextlib.contextmanager
def backprop_rule(model: nn.Module, rule: str) -> Iterator[nn.Module]:
    """Inside the block every Conv2d of ``model`` back-propagates with ``rule`` (same forward).

    The rule is swapped in by patching the modules, which every thread sees, so one block runs
    at a time process-wide: otherwise a thread could restore another's patch mid-backward, or
    run the gradient rule through patched convs.
    """
    check_rule(rule)
    with _RULE_LOCK:
        yield from _patched(model, rule)


def _patched(model: nn.Module, rule: str) -> Iterator[nn.Module]:
    """The body of ``backprop_rule`` (caller holds the lock)."""
    if rule == "gradient":
        yield model
        return
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in convs:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ConfigError(
                f"prm rule supports zero-padded convs with integer padding, got {m!r}"
            )
    saved = [m.__dict__.get("forward") for m in convs]
    try:
        for m in convs:
            m.forward = types.MethodType(_prm_forward, m)
        yield model
    finally:
        for m, old in zip(convs, saved, strict=True):
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old


def _peak_tensor(peaks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Return peaks as an int64 tensor [K,3] (class, y, x) from rows (class, y, x, value)."""
    p = peaks if torch.is_tensor(peaks) else torch.as_tensor(np.asarray(peaks, dtype=np.float64))
    if p.ndim != 2 or p.shape[1] < 3:
        raise ConfigError(f"peaks must be [K,4] rows (class, y, x, value), got {tuple(p.shape)}")
    return p[:, :3].round().long()


def peak_response_maps(
    classifier: nn.Module,
    x: torch.Tensor,
    peaks: np.ndarray | torch.Tensor,
    rule: str = "gradient",
) -> torch.Tensor:
    """Return R [K,H,W]: input gradients of K one-hot peak seeds, summed over colour, clamped >= 0.

    ``x`` is one normalised image [1,3,H,W]: ONE forward at batch 1, then ONE backward batched
    over the K seeds (``is_grads_batched``: autograd's backward vmapped over the seeds), with
    the classifier in eval mode (restored afterwards). Parameter gradients are neither
    computed nor accumulated.
    """
    check_rule(rule)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"peak_response_maps expects one image [1,C,H,W], got {tuple(x.shape)}")
    idx = _peak_tensor(peaks)
    k = idx.shape[0]
    h, w = x.shape[-2:]
    if k == 0:
        return x.new_zeros((0, h, w))
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.enable_grad(), backprop_rule(classifier, rule):
            xi = x.detach().clone().requires_grad_(True)
            crm = classifier(xi)
            c, y, xx = idx.unbind(1)
            _, n_cls, hh, ww = crm.shape
            bound = torch.tensor([n_cls, hh, ww])
            if ((idx < 0) | (idx >= bound)).any():
                raise ConfigError(f"peak outside the class response map [{n_cls},{hh},{ww}]")
            seeds = crm.new_zeros((k, *crm.shape))
            seeds[torch.arange(k), 0, c, y, xx] = 1.0
            (grad,) = torch.autograd.grad(crm, xi, grad_outputs=seeds, is_grads_batched=True)
    finally:
        classifier.train(was_training)
    return grad[:, 0].sum(dim=1).clamp(min=0)
