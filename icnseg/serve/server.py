"""`icnseg serve`: the model behind a real Triton Inference Server, through PyTriton.

PyTriton starts the ``tritonserver`` binary it ships (HTTP, gRPC, metrics, health and
readiness endpoints, dynamic batching) and hands each batch of requests to
:class:`TritonModel`, which segments every image with the one Segmenter protocol. A request
Triton itself rejects (wrong dtype or shape) never reaches the model; one the model cannot
segment gets a one-line error; the server goes on serving. SIGTERM (or Ctrl-C) stops it
gracefully: Triton finishes the requests in flight, then exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, ConfigError
from icnseg.serve.requests import IMAGE, IMAGE_BYTES, PROPOSALS, decode_request, encode_response

EXTRA_HINT = "pip install 'icnseg[serve]'"
MODEL_NAME = "icnseg"


@dataclass(frozen=True)
class ServeConfig:
    """Where and how Triton serves the model."""

    host: str = "127.0.0.1"  # address of every endpoint (0.0.0.0: all interfaces)
    http_port: int = 8000  # Triton HTTP/REST (KServe v2) port
    grpc_port: int = 8001  # Triton gRPC port
    metrics_port: int = 8002  # Prometheus metrics port (/metrics)
    max_batch: int = 4  # largest batch Triton's dynamic batcher forms
    batch_delay_us: int = 0  # how long a request may wait for others to batch with
    exit_timeout_s: int = 10  # how long shutdown waits for requests in flight

    def __post_init__(self) -> None:
        for flag in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, flag)
            if not 0 < port < 65536:
                raise ConfigError(f"--{flag.replace('_', '-')} must be in 1..65535, got {port}")
        if len({self.http_port, self.grpc_port, self.metrics_port}) != 3:
            raise ConfigError("--http-port, --grpc-port and --metrics-port must differ")
        if self.max_batch < 1:
            raise ConfigError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.batch_delay_us < 0:
            raise ConfigError(f"--batch-delay-us must be >= 0, got {self.batch_delay_us}")


class TritonModel:
    """The inference callable PyTriton binds: a list of requests -> a list of responses."""

    def __init__(self, model: Any, cfg: Any) -> None:
        """``model``: a Segmenter (``icnseg.load``); ``cfg``: its SegmentConfig."""
        self.model, self.cfg = model, cfg

    def segment(self, image: np.ndarray, proposals: Any) -> list:
        """One image through prepare -> infer -> select."""
        prepared = self.model.prepare(image, proposals)
        return self.model.select(prepared, self.model.infer(prepared, self.cfg), self.cfg)

    def __call__(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
        """Decode every request first (a bad one fails the call before any work), then
        segment each image in order."""
        decoded = [decode_request(r, f"request {i}" if len(requests) > 1 else "request")
                   for i, r in enumerate(requests)]
        return [encode_response([(image.shape[:2], self.segment(image, props))
                                 for image, props in items]) for items in decoded]


def tensors() -> tuple[list, list]:
    """PyTriton input and output specs (shapes without the batch dimension)."""
    from pytriton.model_config import Tensor

    inputs = [Tensor(name=IMAGE, dtype=np.uint8, shape=(-1, -1, 3), optional=True),
              Tensor(name=IMAGE_BYTES, dtype=bytes, shape=(1,), optional=True),
              Tensor(name=PROPOSALS, dtype=np.uint8, shape=(-1, -1, -1), optional=True)]
    outputs = [Tensor(name="count", dtype=np.int32, shape=(1,)),
               Tensor(name="class_id", dtype=np.int32, shape=(-1,)),
               Tensor(name="class_name", dtype=bytes, shape=(-1,)),
               Tensor(name="score", dtype=np.float64, shape=(-1,)),
               Tensor(name="bbox", dtype=np.int32, shape=(-1, 4)),
               Tensor(name="mask", dtype=bytes, shape=(-1,)),
               Tensor(name="image_size", dtype=np.int32, shape=(2,))]
    return inputs, outputs


def use_own_libpython() -> None:
    """Let Triton's Python-backend stub embed this interpreter's libpython.

    The stub links ``libpython3.X.so`` by name; without this a system copy of another patch
    release (say Debian's 3.11.2 next to a pyenv 3.11.7 venv) gets loaded and fails on this
    interpreter's standard library. Only acts for a shared-library build of Python.
    """
    libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if not (sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and lib
            and (Path(libdir) / lib).is_file()):
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])


def import_pytriton() -> Any:
    """The ``pytriton.triton`` module, or BackendUnavailable naming the extra."""
    try:
        import pytriton.triton
    except ImportError as exc:
        raise BackendUnavailable(f"PyTriton is not installed ({exc}); {EXTRA_HINT}") from exc
    return pytriton.triton


def endpoints(cfg: ServeConfig) -> dict[str, str]:
    """The URLs a client uses."""
    return {"http": f"http://{cfg.host}:{cfg.http_port}", "grpc": f"{cfg.host}:{cfg.grpc_port}",
            "metrics": f"http://{cfg.host}:{cfg.metrics_port}/metrics"}


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # PyTriton's serve() stops Triton cleanly on it


def serve(model: Any, segment_cfg: Any, cfg: ServeConfig | None = None,
          log: Callable[[str], None] = print) -> None:
    """Serve ``model`` as Triton model ``icnseg`` until SIGTERM / Ctrl-C (blocks)."""
    cfg = cfg or ServeConfig()
    triton = import_pytriton()
    from pytriton.model_config import DynamicBatcher, ModelConfig

    use_own_libpython()
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    config = triton.TritonConfig(
        http_address=cfg.host, http_port=cfg.http_port, grpc_address=cfg.host,
        grpc_port=cfg.grpc_port, metrics_address=cfg.host, metrics_port=cfg.metrics_port,
        exit_timeout_secs=cfg.exit_timeout_s, log_verbose=0)
    inputs, outputs = tensors()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with triton.Triton(config=config) as server:
            server.bind(model_name=MODEL_NAME, infer_func=TritonModel(model, segment_cfg),
                        inputs=inputs, outputs=outputs,
                        config=ModelConfig(max_batch_size=cfg.max_batch, batcher=DynamicBatcher(
                            max_queue_delay_microseconds=cfg.batch_delay_us)))
            urls = endpoints(cfg)
            log(f"serving {MODEL_NAME} ({model.backend} on {model.device}): HTTP {urls['http']}, "
                f"gRPC {urls['grpc']}, metrics {urls['metrics']}; SIGTERM or Ctrl-C stops")
            server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    log("server stopped")
