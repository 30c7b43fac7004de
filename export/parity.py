"""Parity of an export directory with PyTorch: ONNX Runtime (CPU) vs the eager model.

Per image (synthetic shapes, deterministic in ``seed``): crm and class scores, peaks
(class/y/x identical, values to rtol 1e-4), PRM per peak, ICN output. Criteria:

* PRM (DESIGN): max |R_onnx - R_torch| <= 1e-4 * max |R_torch|, per peak. Deep random-init
  nets (vgg16/resnet50, ``gradient`` rule) flip ReLU/max-pool decisions at FP32 rounding
  level, so torch FP32 itself can be ~1e-2 off its own FP64 result. When the FP32 check
  fails, the FP64-aware criterion decides: the export must be as close to torch FP64 as torch
  FP32 is (``err(onnx, fp64) <= max(1e-4, 2 * err(torch32, fp64))``).
* crm, class scores and the ICN map (T = manifest ``unroll`` passes, fed the torch PRMs):
  max abs error <= 1e-4 * max |reference|.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

from icnseg.artifacts.manifest import read_manifest, verify_files
from icnseg.compare import TOLERANCES, per_peak_err, rel_err

TOL = TOLERANCES["export"]


def _session(path):
    """A CPU ONNX Runtime session for ``path``."""
    from icnseg.export.ort_cpu import cpu_session

    return cpu_session(path, "the parity check (skip it with --no-check)")


def parity_images(input_size: tuple[int, int], n_images: int, seed: int) -> list[np.ndarray]:
    """``n_images`` synthetic shapes images (RGB uint8) at ``input_size``."""
    from icnseg.data.synth import render_sample, sample_rng

    h, w = input_size
    out = []
    for i in range(n_images):
        image, _, _ = render_sample(sample_rng(seed, i), size=max(h, w))
        out.append(np.ascontiguousarray(image[:h, :w]))
    return out


def _prm_check(classifier, x, peaks, rule: str, got: np.ndarray) -> dict[str, Any]:
    """PRM parity for one image, with the FP64-aware fallback."""
    import torch

    from icnseg.models.prm_backprop import peak_response_maps

    want = peak_response_maps(classifier, x, peaks, rule).numpy()
    out: dict[str, Any] = {"prm_err": per_peak_err(got, want), "prm_bound": TOL.prm, "fp64": False}
    if out["prm_err"] > TOL.prm:
        net64 = copy.deepcopy(classifier).double()
        want64 = peak_response_maps(net64, x.to(torch.float64), peaks, rule).numpy()
        out.update(fp64=True, prm_err64=per_peak_err(got, want64),
                   prm_bound=max(TOL.prm, 2 * per_peak_err(want, want64)))
        out["prm_ok"] = out["prm_err64"] <= out["prm_bound"]
    else:
        out["prm_ok"] = True
    return out, want


def _image_parity(m, sessions, image, cfg, unroll: int) -> dict[str, Any]:
    """Compare prm.onnx (and icn.onnx) with the torch model on one image."""
    import torch

    from icnseg.models.icn import enhance
    from icnseg.models.prm import class_scores, find_peaks
    from icnseg.preprocess import prepare_input

    _, xn = prepare_input(image, tuple(cfg["input_size"]), m.mean, m.std)
    x = torch.from_numpy(xn)
    crm, scores, peaks, count, prm = sessions["prm"].run(
        ["crm", "class_scores", "peaks", "count", "prm"], {"image": xn})
    with torch.no_grad():
        crm_t = m.classifier(x)
        conf = class_scores(crm_t[0], cfg["peaks"]).numpy()
    want_peaks = find_peaks(crm_t[0], conf >= cfg["peaks"].score_threshold, cfg["peaks"])
    n = int(count[0])
    res: dict[str, Any] = {
        "peaks": len(want_peaks),
        "crm_err": rel_err(crm, crm_t.numpy()),
        "scores_err": rel_err(scores[0], conf),
        "peaks_equal": n == len(want_peaks)
        and np.array_equal(peaks[:n, :3], want_peaks[:, :3])
        and np.allclose(peaks[:n, 3], want_peaks[:, 3], rtol=1e-4, atol=1e-6),
    }
    want_prm = None
    if res["peaks_equal"] and n:
        prm_res, want_prm = _prm_check(m.classifier, x, want_peaks, cfg["rule"], prm[:n])
        res.update(prm_res)
    else:
        res.update(prm_err=0.0 if res["peaks_equal"] else None, prm_ok=res["peaks_equal"])
    if "icn" in sessions:
        h, w = cfg["input_size"]
        p = want_prm if want_prm is not None else np.random.default_rng(0).random((1, h, w))
        p = p[:, None].astype(np.float32)
        with torch.no_grad():
            want_map = enhance(m.icn, x, torch.from_numpy(p), iterations=unroll).numpy()
        (got_map,) = sessions["icn"].run(["map"], {"image": xn, "prm": p})
        res["icn_err"] = rel_err(got_map, want_map)
    res["ok"] = bool(res["peaks_equal"] and res["prm_ok"] and res["crm_err"] <= TOL.maps
                     and res["scores_err"] <= TOL.maps and res.get("icn_err", 0.0) <= TOL.maps)
    return res


def check_export(model: str | os.PathLike | Any, export_dir: str | os.PathLike,
                 n_images: int = 2, seed: int = 0) -> dict[str, Any]:
    """Run ORT (CPU) and PyTorch on the same inputs; return a report with ``ok``."""
    from icnseg.export.exporter import load_eager
    from icnseg.settings import config_from_dict

    manifest = read_manifest(export_dir)
    paths = verify_files(export_dir, manifest)
    m, _ = load_eager(model)
    seg = config_from_dict({"segment": manifest["segment"]})
    cfg = {"input_size": manifest["input_size"], "peaks": seg.peaks, "rule": manifest["rule"]}
    sessions = {role: _session(path) for role, path in paths.items()}
    images = [_image_parity(m, sessions, im, cfg, int(manifest["unroll"]))
              for im in parity_images(tuple(manifest["input_size"]), n_images, seed)]
    return {"rule": manifest["rule"], "tolerance": TOL.prm, "images": images,
            "ok": all(r["ok"] for r in images)}


def _fmt(v: Any) -> str:
    """A table cell."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:.1e}" if isinstance(v, float) else str(v)


def format_report(report: dict[str, Any]) -> str:
    """A small text table of a parity report."""
    head = ["image", "peaks", "same peaks", "crm err", "score err", "PRM err", "PRM bound",
            "ICN err", "ok"]
    rows = [head]
    for i, r in enumerate(report["images"]):
        prm = r.get("prm_err64", r.get("prm_err"))
        prm_s = _fmt(prm) + (" (vs fp64)" if r.get("fp64") else "")
        rows.append([str(i), str(r["peaks"]), _fmt(r["peaks_equal"]), _fmt(r["crm_err"]),
                     _fmt(r["scores_err"]), prm_s, _fmt(r.get("prm_bound")),
                     _fmt(r.get("icn_err")), _fmt(r["ok"])])
    widths = [max(len(row[j]) for row in rows) for j in range(len(head))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)) for row in rows]
    verdict = "PASS" if report["ok"] else "FAIL"
    lines.append(f"parity ONNX Runtime CPU vs PyTorch (rule {report['rule']}, errors relative to "
                 f"max|reference|, tolerance {report['tolerance']:g}): {verdict}")
    return "\n".join(lines)
