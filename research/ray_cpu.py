"""`icnseg run --ray` vs the single-process `icnseg run` on synthetic images.

    python -m research.ray_cpu --n 100 --out benchmarks/results/ray_cpu

Writes N synthetic images (``icnseg.data.synth``) plus one corrupt file, then times each
command in a fresh process, start-up included (model load; for Ray also the local cluster and
the actors): the single-process run, ``--ray --workers 1 --cpus-per-worker C`` (C = all CPUs,
as the single process has) and ``--ray --workers W`` (one CPU each). Every Ray output must be
byte-identical to the single-process one (JSON and PNG) and the corrupt image must be the one
failure, else no figure is written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from icnseg.benchmarks.agree import BenchmarkError
from icnseg.benchmarks.machine import machine_info


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, exit status, stderr lines starting with 'icnseg:') of one command."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("icnseg:")]
    return wall, proc.returncode, "\n".join(errors) or proc.stderr[-2000:]


def compare(ref: Path, got: Path) -> dict[str, Any]:
    """Files equal byte for byte; BenchmarkError naming the first difference."""
    names = sorted(p.name for p in ref.iterdir())
    extra = sorted({p.name for p in got.iterdir()} - set(names) - {"failures.jsonl"})
    if extra or any(not (got / n).is_file() for n in names):
        raise BenchmarkError(f"{got}: other files than {ref} (extra {extra[:3]})")
    for n in names:
        if (ref / n).read_bytes() != (got / n).read_bytes():
            raise BenchmarkError(f"{got / n}: differs from {ref / n}")
    return {"files": len(names), "identical": True}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write <out>.json and <out>.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="synthetic images (default: 100)")
    ap.add_argument("--workers", type=int, default=2, help="workers of the pool run")
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default="benchmarks/results/ray_cpu")
    args = ap.parse_args(argv)
    from icnseg.data.synth import generate
    from icnseg.fileio import write_text

    icnseg = str(Path(sys.executable).parent / "icnseg")
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ray-cpu-") as tmp:
        images = generate(Path(tmp) / "data", args.n, seed=0, size=256) / "JPEGImages"
        (images / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        base = [icnseg, "run", args.model, str(images), "--backend", args.backend]
        runs = {"single": [], f"ray_w1_c{cpus}": ["--ray", "--workers", "1",
                                                  "--cpus-per-worker", str(cpus)],
                f"ray_w{args.workers}": ["--ray", "--workers", str(args.workers)]}
        results: dict[str, Any] = {}
        for name, extra in runs.items():
            out = Path(tmp) / name
            wall, rc, err = timed([*base, "--out", str(out), *extra])
            if rc != 1 or err.count("\n") != 0 or "zz_corrupt.jpg" not in err:
                raise BenchmarkError(f"{name}: expected exit 1 and one error for the corrupt "
                                     f"image, got {rc}: {err}")
            results[name] = {"cmd": " ".join(["icnseg", *base[1:], "--out", "OUT", *extra]),
                             "wall_s": round(wall, 2), "images": args.n,
                             "images_per_s": round(args.n / wall, 3), "error": err}
            print(f"{name}: {wall:.1f}s, {args.n / wall:.2f} images/s", flush=True)
            if name != "single":
                results[name]["vs_single"] = compare(Path(tmp) / "single", out)
                failures = (out / "failures.jsonl").read_text().splitlines()
                results[name]["failures_jsonl"] = [json.loads(ln) for ln in failures]
    single = results["single"]["wall_s"]
    for r in results.values():
        r["speedup_vs_single"] = round(single / r["wall_s"], 3)
    from importlib.metadata import version

    report = {"machine": machine_info(), "ray": version("ray"), "n_images": args.n,
              "runs": results}
    write_text(f"{args.out}.json", json.dumps(report, indent=2) + "\n")
    write_text(f"{args.out}.md", render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    """The markdown table."""
    m = report["machine"]
    lines = [f"# icnseg run --ray vs single-process run, {report['n_images']} synthetic images "
             "(256 px) + 1 corrupt",
             "", f"Machine: {m.get('cpu')} ({m.get('cores')} cores, load average at start "
             f"{m.get('loadavg')}), no GPU; ray {report['ray']}. Wall time of each "
             "command in a fresh process, start-up included (model load; Ray: local cluster + "
             "actors). Outputs of every Ray run are byte-identical to the single-process run's "
             "(JSON and PNG); the corrupt image is the one failure (exit status 1).", "",
             f"Base command: `{report['runs']['single']['cmd']}`, then the flags below.", "",
             "| run | command flags | wall s | images/s | vs single |", "|---|---|---|---|---|"]
    load = (m.get("loadavg") or [0])[0]
    if load > (m.get("cores") or 1):
        lines[2:2] = [f"The machine was shared (load average {load} on {m.get('cores')} "
                      "cores): a job with more processes gets a larger share of a contended "
                      "CPU, so these ratios are not a scaling result; only the agreement is.",
                      ""]
    for name, r in report["runs"].items():
        flags = r["cmd"].split("OUT", 1)[1].strip() or "(none)"
        lines.append(f"| {name} | `{flags}` | {r['wall_s']} | {r['images_per_s']} | "
                     f"{r['speedup_vs_single']}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
