"""icn.onnx: the ICN (image + raw PRM -> enhanced map), T passes optionally unrolled.

Inputs: ``image`` [1,3,H,W] (normalised, shared by all K instances: broadcast inside the
graph) and ``prm`` [K,1,H,W] (raw, any scale: min-max normalised inside, as the ICN does);
output ``map`` [K,1,H,W] = sigmoid output in [0,1]. K is always dynamic; H/W are dynamic
with ``dynamic_size`` (multiples of 16). ``unroll=T`` chains T passes in one graph, feeding
each output back as the PRM (``icnseg.models.icn.enhance``).
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from icnseg.errors import ExportError
from icnseg.export.clean import clean_model
from icnseg.export.opset import check_trt_ops

ICN_INPUTS = ("image", "prm")
ICN_OUTPUTS = ("map",)


class _Unrolled(nn.Module):
    """``unroll`` ICN passes with the image expanded to the K instances once; ``factored``:
    the mapping's d5 half at stride 16 (its matrices are fixed by H, W, so not for a graph
    whose size is dynamic)."""

    def __init__(self, icn: nn.Module, unroll: int, factored: bool) -> None:
        super().__init__()
        self.icn, self.unroll, self.factored = icn, unroll, factored

    def forward(self, image: torch.Tensor, prm: torch.Tensor) -> torch.Tensor:
        # Explicit positive sizes: Expand on a Shape-derived vector, no -1 handling ops.
        k, _, h, w = prm.shape
        image = image.expand(k, 3, h, w)
        out = prm
        for _ in range(self.unroll):
            out = self.icn(image, out, self.factored)
        return out


def build_icn_onnx(
    icn: nn.Module,
    input_size: tuple[int, int],
    opset: int = 17,
    dynamic_size: bool = False,
    unroll: int = 1,
) -> onnx.ModelProto:
    """Export ``icn`` to an ONNX model (image [1,3,H,W], prm [K,1,H,W] -> map [K,1,H,W])."""
    if unroll < 1:
        raise ExportError(f"unroll must be >= 1, got {unroll}")
    if getattr(icn, "variant", "full") == "no_prm":
        raise ExportError("this ICN is the ablation variant without an input PRM (icn_variant "
                          "no_prm): it gives every instance the same map, so it has no icn.onnx")
    h, w = (int(v) for v in input_size)
    if h % 16 or w % 16:
        raise ExportError(f"ICN input size {h}x{w} must be divisible by 16")
    was_training = icn.training
    icn.eval()
    axes = {"prm": {0: "K"}, "map": {0: "K"}}
    if dynamic_size:
        axes = {
            "image": {2: "H", 3: "W"},
            "prm": {0: "K", 2: "H", 3: "W"},
            "map": {0: "K", 2: "H", 3: "W"},
        }
    buf = io.BytesIO()
    sample = (torch.zeros(1, 3, h, w), torch.rand(2, 1, h, w, generator=torch.Generator()))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about the ICN's shape checks
            torch.onnx.export(
                _Unrolled(icn, unroll, factored=not dynamic_size),
                sample,
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=list(ICN_INPUTS),
                output_names=list(ICN_OUTPUTS),
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"cannot export the ICN to ONNX (opset {opset}): {msg}") from exc
    finally:
        icn.train(was_training)
    model = clean_model(onnx.load_from_string(buf.getvalue()))
    onnx.checker.check_model(model, full_check=True)
    check_trt_ops(model)
    return model
