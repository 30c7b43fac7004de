"""A real Triton server (`icnseg serve`) on 127.0.0.1: the instances of `icnseg run` over HTTP
and gRPC, errors for bad requests, still serving after them, metrics, SIGTERM."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from icnseg.cli.main import main
from icnseg.data.images import read_image
from icnseg.loader import ASSETS

SAMPLES = sorted((ASSETS / "samples").glob("*.jpg"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`icnseg run` on the samples with the same backend: {stem: record}."""
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "default", *map(str, SAMPLES), "--backend", "onnxruntime",
                 "--out", str(out)]) == 0
    return {p.stem: json.loads((out / f"{p.stem}.json").read_text()) for p in SAMPLES}


def _infer(module, url: str, name: str, array: np.ndarray):
    client = module.InferenceServerClient(url)
    dtype = "BYTES" if array.dtype == object else {np.uint8: "UINT8", np.float32: "FP32"}[
        array.dtype.type]
    inp = module.InferInput(name, list(array.shape), dtype)
    inp.set_data_from_numpy(array)
    return client.infer("icnseg", [inp])


def _check_same(result, record) -> None:
    n = int(result.as_numpy("count")[0, 0])
    want = record["instances"]
    assert n == len(want)
    names = [b.decode() for b in result.as_numpy("class_name")[0, :n]]
    assert names == [w["class"] for w in want]
    assert result.as_numpy("score")[0, :n].tolist() == [w["score"] for w in want]
    assert result.as_numpy("bbox")[0, :n].tolist() == [w["bbox"] for w in want]
    masks = [b.decode() for b in result.as_numpy("mask")[0, :n]]
    assert masks == [w["mask"]["counts"] for w in want]  # byte-identical RLE
    assert result.as_numpy("image_size")[0].tolist() == [record["height"], record["width"]]


def test_same_instances_as_run_over_http_and_grpc(server, reference):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    for path in SAMPLES:
        image = read_image(path)[None]
        _check_same(_infer(httpclient, f"127.0.0.1:{server.http}", "image", image),
                    reference[path.stem])
        encoded = np.array([[path.read_bytes()]], dtype=object)
        _check_same(_infer(grpcclient, f"127.0.0.1:{server.grpc}", "image_bytes", encoded),
                    reference[path.stem])


@pytest.mark.parametrize("name, array, match", [
    ("image", np.zeros((1, 8, 8, 3), np.float32), "data-type is 'FP32'"),
    ("image", np.zeros((1, 8, 8), np.uint8), "unexpected shape"),
    ("image", np.zeros((1, 0, 8, 3), np.uint8), "Failed to process the request"),
    ("image_bytes", np.array([[b"\xff\xd8\xff\xe0 not a jpeg"]], dtype=object),
     "request: input image_bytes: not a readable image"),
    ("image_bytes", np.array([[b""]], dtype=object), "request: input image_bytes: empty"),
])
def test_bad_request_gets_an_error_and_the_server_goes_on(server, reference, name, array,
                                                          match):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = f"127.0.0.1:{server.http}"
    with pytest.raises(InferenceServerException, match=match):
        _infer(httpclient, url, name, array)
    client = httpclient.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready()
    _check_same(_infer(httpclient, url, "image", read_image(SAMPLES[0])[None]),
                reference[SAMPLES[0].stem])


def test_metrics_count_successes_and_failures(server):
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics}/metrics",
                                  timeout=10).read().decode()
    ok = [line for line in text.splitlines()
          if line.startswith("nv_inference_request_success{") and 'model="icnseg"' in line]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) > 0


def test_sigterm_stops_the_server(server):
    assert server.stop() == 0, server.log_tail()
    assert "server stopped" in server.log_tail()
