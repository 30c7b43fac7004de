"""Forward emission and explicit adjoints of the pooling and resize ops (TensorRT-friendly)."""

from __future__ import annotations

import numpy as np

from icnseg.export.graph import GraphBuilder
from icnseg.export.trace import TracedOp

# The adjoint of a conv with fewer input channels stays a ConvTranspose (ONNX Runtime's CPU
# Conv with so few output channels is slower than its ConvTranspose).
FLIPPED_MIN_CHANNELS = 8


def transpose_output_padding(in_size: tuple[int, int], out_size: tuple[int, int],
                             kernel: tuple[int, int], stride: tuple[int, int],
                             dilation: tuple[int, int], pads: tuple[int, int, int, int]
                             ) -> list[int]:
    """ConvTranspose output_padding that maps a conv's output size back to its input size."""
    res = []
    for a in range(2):
        full = stride[a] * (out_size[a] - 1) + dilation[a] * (kernel[a] - 1) + 1
        res.append(in_size[a] - (full - pads[a] - pads[a + 2]))
    return res


def conv_transpose(gb: GraphBuilder, g: str, w: str, op: TracedOp, kernel: tuple[int, int],
                   stride: tuple[int, int], dilation: tuple[int, int],
                   pads: tuple[int, int, int, int], group: int, hint: str) -> str:
    """Adjoint of a conv with this geometry: ConvTranspose whose output has ``op``'s input size."""
    in_hw, out_hw = op.in_shapes[0][2:], op.out_shape[2:]
    out_pad = transpose_output_padding(in_hw, out_hw, kernel, stride, dilation, pads)
    return gb.op("ConvTranspose", [g, w], hint, kernel_shape=list(kernel), strides=list(stride),
                 dilations=list(dilation), pads=list(pads), group=group,
                 output_padding=out_pad if any(out_pad) else None)


def conv_adjoint(gb: GraphBuilder, g: str, weight: np.ndarray, w: str, op: TracedOp,
                 kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                 pads: tuple[int, int, int, int], group: int, hint: str) -> str:
    """Adjoint of a conv with constant ``weight`` (graph name ``w``) applied to ``g``.

    Stride 1, one group, pads <= dilation*(kernel-1) and at least ``FLIPPED_MIN_CHANNELS``
    input channels: the same sums as the ConvTranspose, written as a Conv with the kernel
    flipped and its in/out channels swapped, padded dilation*(kernel-1) - pad (ONNX
    Runtime's CPU runs it as a blocked NCHWc Conv, ~25% faster than its ConvTranspose at
    16-64 channels, slower for the 3-channel image gradient); otherwise ``conv_transpose``.
    """
    reach = [dilation[a] * (kernel[a] - 1) for a in range(2)]
    in_hw, out_hw = op.in_shapes[0][2:], op.out_shape[2:]
    pad_back = [reach[0] - pads[0], reach[1] - pads[1], reach[0] - pads[2], reach[1] - pads[3]]
    if (tuple(stride) != (1, 1) or group != 1 or min(pad_back) < 0
            or weight.shape[1] < FLIPPED_MIN_CHANNELS
            or any(transpose_output_padding(in_hw, out_hw, kernel, stride, dilation, pads))):
        return conv_transpose(gb, g, w, op, kernel, stride, dilation, pads, group, hint)
    flipped = np.ascontiguousarray(np.asarray(weight).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return gb.op("Conv", [g, gb.const(flipped, f"{hint}.wflip")], hint,
                 kernel_shape=list(kernel), strides=[1, 1], dilations=list(dilation),
                 pads=pad_back, group=1)


# -- max-pool ------------------------------------------------------------------------------
def first_max_selection(gb: GraphBuilder, x: str, y: str, channels: int,
                        out_hw: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], pad: tuple[int, int],
                        dilation: tuple[int, int], hint: str) -> str:
    """Arg-max mask [1,C,kh*kw,oh,ow] (float, exactly one 1 per window) of max-pool ``y``.

    Each kernel offset (di,dj) is a strided Slice of the -inf padded input; comparing it to
    the pooled output marks every maximum, and a strictly-lower-triangular MatMul over the
    offset axis keeps only the first one in row-major window order, as PyTorch does.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    oh, ow = out_hw
    xp = x
    if ph or pw:
        xp = gb.op("Pad", [x, gb.ints([0, 0, ph, pw, 0, 0, ph, pw], "pads"),
                           gb.const(np.float32(-np.inf), "neg_inf")], f"{hint}.pad")
    slices = []
    for di in range(kh):
        for dj in range(kw):
            s = gb.slice(xp, [di * dh, dj * dw], [di * dh + sh * (oh - 1) + 1,
                         dj * dw + sw * (ow - 1) + 1], [2, 3], [sh, sw], f"{hint}.win")
            slices.append(gb.unsqueeze(s, [2]))
    kk = kh * kw
    wins = gb.op("Concat", slices, f"{hint}.wins", axis=2) if kk > 1 else slices[0]
    eq = gb.cast_float(gb.op("Equal", [wins, gb.unsqueeze(y, [2])], f"{hint}.eq"))
    eq = gb.reshape(eq, [1, channels, kk, oh * ow])
    before = np.tril(np.ones((kk, kk), np.float32), k=-1)  # before[t, u] = 1 if u < t
    prior = gb.op("MatMul", [gb.const(before, f"{hint}.tril"), eq], f"{hint}.prior")
    first = gb.cast_float(gb.op("Less", [prior, gb.const(np.float32(0.5))]))
    sel = gb.op("Mul", [eq, first], f"{hint}.first")
    return gb.reshape(sel, [1, channels, kk, oh, ow], f"{hint}.sel")


def maxpool_forward(gb: GraphBuilder, x: str, op: TracedOp) -> tuple[str, str]:
    """MaxPool and its first-arg-max selection mask (see ``first_max_selection``)."""
    kernel, stride = op.params["kernel"], op.params["stride"]
    (ph, pw), (dh, dw) = op.params["pad"], op.params["dilation"]
    _, c, oh, ow = op.out_shape
    y = gb.op("MaxPool", [x], f"{op.name}", kernel_shape=list(kernel), strides=list(stride),
              pads=[ph, pw, ph, pw], dilations=[dh, dw] if (dh, dw) != (1, 1) else None)
    sel = first_max_selection(gb, x, y, c, (oh, ow), kernel, stride, (ph, pw), (dh, dw),
                              op.name)
    return y, sel


def maxpool_backward(gb: GraphBuilder, g: str, sel: str, op: TracedOp) -> str:
    """Route g to the arg-max of each window: one grouped ConvTranspose of one-hot kernels.

    Channel c*kk+t carries g masked by offset t's selection; its kernel is one-hot at t, so
    the strided transposed conv scatter-adds every window's gradient (overlaps included)
    and its pads crop the -inf padding away.
    """
    (kh, kw), (sh, sw) = op.params["kernel"], op.params["stride"]
    (ph, pw), (dh, dw) = op.params["pad"], op.params["dilation"]
    _, c, oh, ow = op.out_shape
    kk = kh * kw
    masked = gb.op("Mul", [gb.unsqueeze(g, [2]), sel], f"{op.name}.gsel")
    masked = gb.reshape(masked, [-1, c * kk, oh, ow])
    onehot = np.zeros((c * kk, 1, kh, kw), np.float32)
    for t in range(kk):
        onehot[t::kk, 0, t // kw, t % kw] = 1.0
    return conv_transpose(gb, masked, gb.const(onehot, f"{op.name}.onehot"), op, (kh, kw),
                          (sh, sw), (dh, dw), (ph, pw, ph, pw), c, f"{op.name}.grad")


def tiles_input(op: TracedOp) -> bool:
    """True when a max-pool's windows tile its input exactly (kernel = stride, no padding,
    no dilation, no leftover rows or columns): each input pixel is in one window."""
    (kh, kw), (sh, sw) = op.params["kernel"], op.params["stride"]
    _, _, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    return ((kh, kw) == (sh, sw) and tuple(op.params["pad"]) == (0, 0)
            and tuple(op.params["dilation"]) == (1, 1) and (h, w) == (oh * kh, ow * kw))


def window_layout(gb: GraphBuilder, sel: str, op: TracedOp) -> str:
    """A tiling max-pool's selection [1,C,kh*kw,oh,ow] laid out at the input's size [1,C,H,W]."""
    (kh, kw), (_, c, oh, ow) = op.params["kernel"], op.out_shape
    parts = gb.reshape(sel, [1, c, kh, kw, oh, ow])
    moved = gb.op("Transpose", [parts], f"{op.name}.sel_hw", perm=[0, 1, 4, 2, 5, 3])
    return gb.reshape(moved, [1, c, oh * kh, ow * kw])


def window_spread(gb: GraphBuilder, g: str, op: TracedOp) -> str:
    """g [K,C,oh,ow] copied to every pixel of its window, [K,C,H,W] (a tiling max-pool)."""
    kh, kw = op.params["kernel"]
    scales = gb.const(np.asarray([1, 1, kh, kw], np.float32), "scales")
    return gb.op("Resize", [g, "", scales], f"{op.name}.spread", mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")


# -- average pool --------------------------------------------------------------------------
def _avg_divisor(op: TracedOp) -> np.ndarray | float:
    """The per-window divisor: a scalar, or [1,1,oh,ow] when padding is not counted."""
    (kh, kw), (sh, sw), (ph, pw) = op.params["kernel"], op.params["stride"], op.params["pad"]
    if op.params["divisor"]:
        return float(op.params["divisor"])
    if op.params["count_include_pad"] or not (ph or pw):
        return float(kh * kw)
    _, _, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    rows = [min(i * sh - ph + kh, h) - max(i * sh - ph, 0) for i in range(oh)]
    cols = [min(j * sw - pw + kw, w) - max(j * sw - pw, 0) for j in range(ow)]
    return np.outer(rows, cols).astype(np.float32)[None, None]


def avgpool_forward(gb: GraphBuilder, x: str, op: TracedOp) -> str:
    """AveragePool (a divisor override is a constant rescale of the padded-count pool)."""
    (kh, kw), (sh, sw), (ph, pw) = op.params["kernel"], op.params["stride"], op.params["pad"]
    include = op.params["count_include_pad"] or bool(op.params["divisor"])
    y = gb.op("AveragePool", [x], op.name, kernel_shape=[kh, kw], strides=[sh, sw],
              pads=[ph, pw, ph, pw], count_include_pad=int(include))
    if op.params["divisor"]:
        y = gb.op("Mul", [y, gb.const(np.float32(kh * kw / op.params["divisor"]))], op.name)
    return y


def avgpool_backward(gb: GraphBuilder, g: str, op: TracedOp) -> str:
    """Spread g / divisor uniformly over each window: grouped ConvTranspose of a constant."""
    (kh, kw), (sh, sw), (ph, pw) = op.params["kernel"], op.params["stride"], op.params["pad"]
    c = op.out_shape[1]
    div = _avg_divisor(op)
    if isinstance(div, float):
        kernel = np.full((c, 1, kh, kw), 1.0 / div, np.float32)
    else:
        g = gb.op("Mul", [g, gb.const(1.0 / div, f"{op.name}.invcount")], f"{op.name}.gdiv")
        kernel = np.ones((c, 1, kh, kw), np.float32)
    return conv_transpose(gb, g, gb.const(kernel, f"{op.name}.box"), op, (kh, kw), (sh, sw),
                          (1, 1), (ph, pw, ph, pw), c, f"{op.name}.grad")


# -- resize --------------------------------------------------------------------------------
def _onnx_resize_modes(op: TracedOp) -> dict[str, str] | None:
    """Resize attributes reproducing the traced interpolation exactly, or None (use MatMul)."""
    (_, _, ih, iw), (oh, ow) = op.in_shapes[0], op.params["size"]
    if op.params["mode"] == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    for n_in, n_out, mat in ((ih, oh, op.params["a_h"]), (iw, ow, op.params["a_w"])):
        if not np.allclose(mat, _resize_matrix(n_in, n_out, attrs["mode"]), atol=1e-6):
            return None
    return attrs


def _resize_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """ONNX Resize's 1-D interpolation matrix [n_out, n_in] for the attributes used above."""
    m = np.zeros((n_out, n_in), np.float32)
    scale = n_out / n_in
    for o in range(n_out):
        if mode == "nearest":
            m[o, min(int(np.floor(o / scale)), n_in - 1)] = 1.0
            continue
        src = min(max((o + 0.5) / scale - 0.5, 0.0), n_in - 1)
        i0 = int(np.floor(src))
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        m[o, i0] += 1.0 - frac
        m[o, i1] += frac
    return m


def resize_forward(gb: GraphBuilder, x: str, op: TracedOp) -> str:
    """Resize when ONNX Resize matches PyTorch exactly, else two MatMuls with the exact matrices."""
    attrs = _onnx_resize_modes(op)
    if attrs is not None:
        sizes = gb.ints([*op.out_shape], "sizes")
        return gb.op("Resize", [x, "", "", sizes], op.name, **attrs)
    t = gb.op("MatMul", [x, gb.const(op.params["a_w"].T.copy(), f"{op.name}.awT")], op.name)
    return gb.op("MatMul", [gb.const(op.params["a_h"], f"{op.name}.ah"), t], op.name)


def resize_backward(gb: GraphBuilder, g: str, op: TracedOp) -> str:
    """Adjoint of the separable interpolation: g_in = A_h^T · g · A_w (two broadcast MatMuls)."""
    t = gb.op("MatMul", [g, gb.const(op.params["a_w"], f"{op.name}.aw")], f"{op.name}.gw")
    a_ht = gb.const(op.params["a_h"].T.copy(), f"{op.name}.ahT")
    return gb.op("MatMul", [a_ht, t], f"{op.name}.grad")
