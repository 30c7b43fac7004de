"""`icnseg doctor [--json]`: what this machine can run and what is missing (icnseg.doctor)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _fmt(value: Any) -> str:
    return "-" if value in (None, "", [], {}) else str(value)


def format_report(r: dict[str, Any]) -> str:
    """The report as aligned text, ending with the backend x precision table."""
    lines = [f"python       {r['python']['version']} ({r['python']['executable']})",
             f"platform     {r['python']['platform']}",
             f"icnseg       {r['icnseg']['version']} ({r['icnseg']['path']})"]
    lines += [f"{name:<12} {_fmt(v)}" for name, v in r["packages"].items()]
    o = r["onnxruntime"]
    dists = ", ".join(f"{n} {v}" for n, v in o["distributions"].items()) or "not installed"
    lines.append(f"onnxruntime  {dists}" + (f"  (CUDA {o['cuda_build']} build)"
                                            if o.get("cuda_build") else ""))
    if o["clash"]:
        lines.append(f"  !! {o['clash']}")
    elif len(o["distributions"]) > 1:
        lines.append(f"  several installed in separate folders; imported: {o.get('imported')}")
    if o.get("preload_failed"):
        lines.append(f"  preload_dlls could not load: {', '.join(o['preload_failed'])}")
    for provider, state in o.get("providers", {}).items():
        lines.append(f"  {provider:<26} {'starts' if state == 'ok' else 'no: ' + state}")
    t = r["torch"]
    lines.append(f"torch        {_fmt(t.get('version'))}" + (
        f"  CUDA build {_fmt(t.get('cuda_build'))}, GPU visible: {t.get('cuda_available')}"
        if t.get("version") and "error" not in t else f"  {t.get('error', '')}".rstrip()))
    d = r["driver"]
    if d["gpus"]:
        lines.append(f"driver       {_fmt(d.get('driver'))}, CUDA {d['cuda_driver_api']}")
        for g in d["gpus"]:
            lines.append(f"  GPU {g['index']}: {g['name']}, compute {g['compute_capability']}, "
                         f"{g['memory_mib']} MiB")
    else:
        lines.append(f"GPUs         none: {d['error']}")
    trt = r["tensorrt"]
    if trt["flavour"]:
        lines.append(f"TensorRT     {trt['flavour']} {trt['version']}")
        lines += [f"  {gpu}: {why}" for gpu, why in trt["gpus"].items()]
    else:
        lines.append(f"TensorRT     {trt['error']}")
    pc = r["pycuda"]
    lines.append(f"pycuda       {_fmt(pc['version'])}  nvcc: {_fmt(pc['nvcc'])}")
    fb = pc["fatbins"]
    lines.append(f"  fatbins    CUDA {_fmt(fb.get('cuda'))}, sm_"
                 f"{'/'.join(map(str, fb.get('archs') or []))}; load plan: "
                 + ", ".join(f"{s} {p}" for s, p in pc["plan"].items()))
    lines.append(f"  matcher    {pc['kernels']}")
    if r["jetson"]:
        j = r["jetson"]
        clocks = ", ".join(f"{n} {c['cur_mhz']}/{c['max_mhz']} MHz"
                           for n, c in j["clocks_mhz"].items())
        lines.append(f"Jetson       {j['model']}; {_fmt(j['power_mode'])}; {_fmt(clocks)}")
    lines += ["", f"{'backend':<12} {'device':<9} {'precision':<10} status"]
    for row in r["matrix"]:
        status = "ok" if row["ok"] else f"no: {row['missing']}"
        lines.append(f"{row['backend']:<12} {row['device']:<9} {row['precision']:<10} {status}")
    lines += ["", r["summary"]]
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the report (text or JSON); exit status 0 whenever the report could be made."""
    from icnseg.doctor import collect

    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `doctor` on the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "doctor", help="check what runs here: GPUs, drivers, ONNX Runtime providers, TensorRT",
        description="Probe this machine: versions, GPUs (from the CUDA driver), the ONNX "
        "Runtime providers that really start, TensorRT and its GPU support, pycuda and the "
        "kernel path, the Jetson board; then which backend x precision works here and, for "
        "each that does not, the one thing missing.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)
    return p
