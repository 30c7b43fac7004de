"""A real `icnseg serve` (Triton via PyTriton) on 127.0.0.1 for the server tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icnseg.serve.ports import free_ports

START_TIMEOUT_S = 120  # Triton + the Python backend stub + model load, on a busy 2-core CPU
STOP_TIMEOUT_S = 60


class Server:
    """A running `icnseg serve` subprocess and its endpoints."""

    def __init__(self, proc: subprocess.Popen, http: int, grpc: int, metrics: int,
                 log: Path) -> None:
        self.proc, self.http, self.grpc, self.metrics, self.log = proc, http, grpc, metrics, log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        """SIGTERM, then wait (bounded); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise


def start_server(tmp_path: Path, *args: str) -> Server:
    """Start `icnseg serve default --backend onnxruntime` and wait until Triton is ready."""
    import tritonclient.http as httpclient

    http, grpc, metrics = free_ports(3)
    log = tmp_path / "serve.log"
    icnseg = str(Path(sys.executable).parent / "icnseg")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [icnseg, "serve", "default", "--backend", "onnxruntime", "--host", "127.0.0.1",
             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port",
             str(metrics), *args], stdout=fh, stderr=subprocess.STDOUT)
    server = Server(proc, http, grpc, metrics, log)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"icnseg serve exited with {proc.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(Exception):
            if client.is_server_ready() and client.is_model_ready("icnseg"):
                return server
        time.sleep(0.5)
    server.stop()
    pytest.fail(f"icnseg serve not ready after {START_TIMEOUT_S}s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's tests; stopped with SIGTERM at the end."""
    pytest.importorskip("pytriton", reason="needs the serve extra: pip install 'icnseg[serve]'")
    pytest.importorskip("tritonclient.grpc")
    srv = start_server(tmp_path_factory.mktemp("serve"))
    yield srv
    if srv.proc.poll() is None:
        srv.stop()
