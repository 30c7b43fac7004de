"""A bounded load test of `icnseg serve` (Triton via PyTriton) on 127.0.0.1.

    python -m research.serve_load --clients 4 --requests 50 --out benchmarks/results/serve_cpu

Starts ``icnseg serve MODEL`` on free loopback ports and waits for readiness; sends each
sample image once to learn its answer; then a sequential baseline (1 client) and the load
(``--clients`` threads, half HTTP and half gRPC, ``--requests`` each, then they stop). A
request is an error if it fails or answers another instance count than the warm-up did.
Afterwards the bad requests (wrong dtype, wrong shape, zero-size image, corrupt and empty
image bytes) must each get an error and the server must still answer; Triton's metrics give
the batches the dynamic batcher formed; SIGTERM must stop the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.benchmarks.agree import BenchmarkError
from icnseg.benchmarks.machine import machine_info
from icnseg.serve.ports import free_ports

BAD_REQUESTS = {
    "float32 image": ("image", np.zeros((1, 8, 8, 3), np.float32)),
    "2-D image": ("image", np.zeros((1, 8, 8), np.uint8)),
    "zero-size image": ("image", np.zeros((1, 0, 8, 3), np.uint8)),
    "corrupt image bytes": ("image_bytes", np.array([[b"\xff\xd8\xff\xe0 junk"]], dtype=object)),
    "empty image bytes": ("image_bytes", np.array([[b""]], dtype=object)),
}


def infer(protocol: str, port: int, name: str, array: np.ndarray, client=None):
    """One request; returns the result (raises on a Triton error)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    mod = httpclient if protocol == "http" else grpcclient
    client = client or mod.InferenceServerClient(f"127.0.0.1:{port}")
    dtype = "BYTES" if array.dtype == object else {np.uint8: "UINT8", np.float32: "FP32"}[
        array.dtype.type]
    inp = mod.InferInput(name, list(array.shape), dtype)
    inp.set_data_from_numpy(array)
    return client.infer("icnseg", [inp])


def client_loop(protocol: str, port: int, images: list, expected: list[int], n: int,
                offset: int, out: list) -> None:
    """``n`` requests, one after the other, cycling through the images: (latency s, ok)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    mod = httpclient if protocol == "http" else grpcclient
    client = mod.InferenceServerClient(f"127.0.0.1:{port}")
    for i in range(n):
        k = (offset + i) % len(images)
        t0 = time.perf_counter()
        try:
            res = infer(protocol, port, "image", images[k], client)
            ok = int(res.as_numpy("count")[0, 0]) == expected[k]
        except Exception:  # a failed request is counted, the loop goes on
            ok = False
        out.append((protocol, time.perf_counter() - t0, ok))


def run_load(ports: dict[str, int], images: list, expected: list[int], clients: int,
             requests: int) -> dict[str, Any]:
    """``clients`` threads (alternating HTTP / gRPC) x ``requests`` each; latency stats."""
    records: list = []
    threads = [threading.Thread(target=client_loop, args=(
        "http" if c % 2 == 0 else "grpc", ports["http" if c % 2 == 0 else "grpc"], images,
        expected, requests, c, records)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array([r[1] for r in records]) * 1e3
    stats = {"clients": clients, "requests": len(records), "wall_s": round(wall, 2),
             "throughput_rps": round(len(records) / wall, 3),
             "errors": sum(not r[2] for r in records),
             "p50_ms": round(float(np.percentile(lat, 50)), 1),
             "p99_ms": round(float(np.percentile(lat, 99)), 1),
             "mean_ms": round(float(lat.mean()), 1)}
    for proto in ("http", "grpc"):
        sub = np.array([r[1] for r in records if r[0] == proto]) * 1e3
        if sub.size:
            stats[f"{proto}_p50_ms"] = round(float(np.percentile(sub, 50)), 1)
    return stats


def metric(text: str, name: str) -> float:
    """The value of Triton metric ``name`` for model icnseg."""
    for line in text.splitlines():
        if line.startswith(name + "{") and 'model="icnseg"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise BenchmarkError(f"Triton metrics have no {name} for model icnseg")


def main(argv: list[str] | None = None) -> int:
    """Start the server, measure, check errors and shutdown, write <out>.json/.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50, help="per client")
    ap.add_argument("--baseline", type=int, default=20, help="sequential requests, 1 client")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/serve_cpu")
    args = ap.parse_args(argv)
    from icnseg.data.images import read_image
    from icnseg.fileio import write_text
    from icnseg.loader import ASSETS

    http, grpc, metrics = free_ports(3)
    ports = {"http": http, "grpc": grpc}
    cmd = [str(Path(sys.executable).parent / "icnseg"), "serve", args.model, "--backend",
           args.backend, "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port",
           str(grpc), "--metrics-port", str(metrics), "--max-batch", str(args.max_batch)]
    log = Path(f"{args.out}.server.log.tmp")
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        report = measure(args, ports, metrics, proc, t0, read_image, ASSETS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.unlink(missing_ok=True)
    report["cmd"] = " ".join(["icnseg", *cmd[1:]])
    write_text(f"{args.out}.json", json.dumps(report, indent=2) + "\n")
    write_text(f"{args.out}.md", render(report))
    print(render(report))
    return 0


def measure(args, ports, metrics_port, proc, t0, read_image, assets) -> dict[str, Any]:
    """Everything between start and stop (the caller kills the server if this fails)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{ports['http']}")
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchmarkError("icnseg serve did not become ready")
        with contextlib.suppress(Exception):
            if client.is_server_ready() and client.is_model_ready("icnseg"):
                break
        time.sleep(0.5)
    ready_s = time.perf_counter() - t0
    images = [read_image(p)[None] for p in sorted((assets / "samples").glob("*.jpg"))]
    expected = [int(infer("http", ports["http"], "image", im).as_numpy("count")[0, 0])
                for im in images]
    baseline = run_load(ports, images, expected, 1, args.baseline)
    load = run_load(ports, images, expected, args.clients, args.requests)
    load["throughput_vs_sequential"] = round(load["throughput_rps"]
                                             / baseline["throughput_rps"], 3)
    bad: dict[str, str] = {}
    for what, (name, array) in BAD_REQUESTS.items():
        try:
            infer("http", ports["http"], name, array)
            bad[what] = "ANSWERED (no error)"
        except Exception as exc:
            lines = str(exc).splitlines()  # the model's own line when there is one
            bad[what] = next((ln.strip() for ln in lines if "RequestError" in ln), lines[0])[:200]
    healthy = bool(client.is_server_live() and client.is_server_ready() and int(
        infer("http", ports["http"], "image", images[0]).as_numpy("count")[0, 0])
        == expected[0])
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    batching = {"requests_ok": metric(text, "nv_inference_request_success"),
                "requests_failed": metric(text, "nv_inference_request_failure"),
                "model_executions": metric(text, "nv_inference_exec_count"),
                "inferences": metric(text, "nv_inference_count")}
    batching["mean_batch"] = round(batching["inferences"] / batching["model_executions"], 3)
    t_stop = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=90)
    return {"machine": machine_info(), "ready_s": round(ready_s, 1), "expected_counts": expected,
            "sequential": baseline, "load": load, "bad_requests": bad,
            "healthy_after_bad_requests": healthy, "triton_metrics": batching,
            "sigterm": {"exit_status": rc, "stop_s": round(time.perf_counter() - t_stop, 1)}}


def render(r: dict[str, Any]) -> str:
    """The markdown summary."""
    m, s, ld = r["machine"], r["sequential"], r["load"]
    lines = [
        "# icnseg serve (Triton via PyTriton) on 127.0.0.1: bounded load test", "",
        f"Machine: {m.get('cpu')} ({m.get('cores')} cores, load average at start "
        f"{m.get('loadavg')}), no GPU. Server: `{r['cmd']}` (the 3 demo samples, 256x256, "
        f"sent as uint8 `image`); ready {r['ready_s']} s after start.", "",
        "| run | clients x requests | p50 ms | p99 ms | throughput req/s | errors |",
        "|---|---|---|---|---|---|",
        f"| sequential | 1 x {s['requests']} | {s['p50_ms']} | {s['p99_ms']} | "
        f"{s['throughput_rps']} | {s['errors']} |",
        f"| load (HTTP + gRPC) | {ld['clients']} x {ld['requests'] // ld['clients']} | "
        f"{ld['p50_ms']} | {ld['p99_ms']} | {ld['throughput_rps']} "
        f"({ld['throughput_vs_sequential']}x sequential) | {ld['errors']} |", "",
        f"Dynamic batching (Triton metrics): {r['triton_metrics']['inferences']:.0f} "
        f"inferences in {r['triton_metrics']['model_executions']:.0f} model executions "
        f"(mean batch {r['triton_metrics']['mean_batch']}).", "",
        "Bad requests (each answered with an error):", ""]
    load = (m.get("loadavg") or [0])[0]
    if load > (m.get("cores") or 1):
        lines[2:2] = [f"The machine was shared (load average {load} on {m.get('cores')} cores): "
                      "latencies and throughput are indicative only; the counts (errors, "
                      "answers equal to the warm-up's) are the result.", ""]
    lines += [f"- {k}: `{v}`" for k, v in r["bad_requests"].items()]
    lines += ["", f"Healthy and answering after them: {r['healthy_after_bad_requests']}. "
              f"SIGTERM: exit status {r['sigterm']['exit_status']} after "
              f"{r['sigterm']['stop_s']} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
