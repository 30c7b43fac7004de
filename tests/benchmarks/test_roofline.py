"""Roofline counts against hand formulas, torch's FlopCounterMode, the default export's stages,
the GPU table lookup and the roofline arithmetic."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from icnseg.benchmarks import roofline as rl
from icnseg.errors import ConfigError, InputError

EXPORT = Path(__file__).resolve().parents[2] / "icnseg" / "assets" / "export"
F = TensorProto.FLOAT


def one_op(op: str, inputs: dict, out_rank: int | None = None, inits: dict | None = None,
           n_out: int = 1, **attrs) -> onnx.ModelProto:
    """A single-node model: ``inputs`` name -> shape (float), ``inits`` name -> array."""
    inits = inits or {}
    node = helper.make_node(op, [*inputs, *inits], [f"y{i}" for i in range(n_out)], name="op",
                            **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.UNDEFINED, None)
         for i in range(n_out)],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cost(model: onnx.ModelProto, **kw) -> rl.NodeCost:
    """The cost of the model's only node."""
    (c,) = rl.graph_costs(model, **kw)
    assert c.status == "ok"
    return c


def conv_out(n: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Conv output length."""
    return (n + 2 * pad - dil * (k - 1) - 1) // stride + 1


def test_conv_groups_dilation_bias() -> None:
    n, cin, h, w, cout, g, k = 2, 4, 11, 13, 6, 2, 3
    wt, b = np.ones((cout, cin // g, k, k), np.float32), np.ones(cout, np.float32)
    m = one_op("Conv", {"x": [n, cin, h, w]}, inits={"w": wt, "b": b}, group=g,
               kernel_shape=[k, k], strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2])
    oh, ow = conv_out(h, k, 2, 1, 2), conv_out(w, k, 2, 1, 2)
    y = n * cout * oh * ow
    c = cost(m)
    assert c.flops == 2 * y * (cin // g) * k * k + y  # MACs x 2 + one bias add per output
    assert c.bytes == 4 * (n * cin * h * w + wt.size + b.size + y)
    assert cost(m, float_bytes=2).bytes == c.bytes // 2


def test_conv_transpose() -> None:
    n, cin, h, w, cout, g, k, s = 1, 4, 5, 6, 6, 2, 3, 2
    wt = np.ones((cin, cout // g, k, k), np.float32)
    m = one_op("ConvTranspose", {"x": [n, cin, h, w]}, inits={"w": wt, "b": np.ones(cout)},
               group=g, kernel_shape=[k, k], strides=[s, s], pads=[1, 1, 1, 1],
               output_padding=[1, 1])
    oh, ow = s * (h - 1) + 1 + (k - 1) + 1 - 2, s * (w - 1) + 1 + (k - 1) + 1 - 2
    # every input element scatters a (Cout/g) x k x k kernel: one MAC each
    c = cost(m)
    assert c.flops == 2 * (n * cin * h * w) * (cout // g) * k * k + n * cout * oh * ow
    assert c.bytes == 4 * (n * cin * h * w + wt.size + n * cout * oh * ow) + 8 * cout  # f64 bias


def test_matmul_broadcast_and_gemm() -> None:
    m = one_op("MatMul", {"a": [3, 1, 5, 7], "b": [4, 7, 2]})
    assert cost(m).flops == 2 * (3 * 4 * 5 * 2) * 7
    assert cost(m).bytes == 4 * (3 * 5 * 7 + 4 * 7 * 2 + 3 * 4 * 5 * 2)
    m = one_op("Gemm", {"a": [7, 5], "b": [7, 3], "c": [3]}, transA=1)
    assert cost(m).flops == 2 * 5 * 3 * 7 + 5 * 3


@pytest.mark.parametrize(("op", "inputs", "attrs", "flops"), [
    ("Add", {"a": [2, 3, 4], "b": [4]}, {}, 24),  # 1 per output element, broadcast or not
    ("Sum", {"a": [2, 3], "b": [2, 3], "c": [3]}, {}, 2 * 6),  # n-1 adds per output element
    ("Clip", {"a": [4, 5]}, {}, 20),
    ("ReduceMean", {"a": [2, 3, 4]}, {"axes": [1], "keepdims": 0}, 24),  # per input element
    ("MaxPool", {"a": [1, 2, 8, 8]}, {"kernel_shape": [3, 3], "pads": [1] * 4}, 2 * 64 * 9),
    ("Sigmoid", {"a": [5, 7]}, {}, 35),
])
def test_elementwise_reduce_pool(op: str, inputs: dict, attrs: dict, flops: int) -> None:
    assert cost(one_op(op, inputs, **attrs)).flops == flops


def test_where_bytes() -> None:
    m = one_op("Where", {"a": [2, 3], "b": [3]}, inits={"c": np.ones((2, 3), bool)})
    m.graph.node[0].input[:] = ["c", "a", "b"]
    c = cost(m)
    assert (c.flops, c.bytes) == (6, 6 * 1 + 4 * (6 + 3) + 4 * 6)  # bool, 2 float in, 1 out


def test_topk_resize_and_data_movement() -> None:
    m = one_op("TopK", {"x": [2, 100]}, inits={"k": np.array([5])}, n_out=2, axis=1)
    c = cost(m)
    assert c.flops == 200 * math.ceil(math.log2(5))
    assert c.bytes == 4 * 200 + 8 + 4 * 10 + 8 * 10  # x, k, values (f32), indices (i64)
    m = one_op("Resize", {"x": [1, 2, 4, 4]}, inits={"r": np.zeros(0, np.float32),
                                                     "s": np.array([1.0, 1, 2, 2], np.float32)},
               mode="linear")
    assert cost(m).flops == 2 * 4 * (2 * 8 * 8)  # bilinear: 4 taps, one MAC each
    m = one_op("Slice", {"x": [10, 10]}, inits={"s": np.array([2]), "e": np.array([5]),
                                                "ax": np.array([0])})
    assert cost(m).flops == 0 and cost(m).bytes == 4 * 30 * 2 + 3 * 8  # reads only the slice
    m = one_op("Transpose", {"x": [3, 4]}, perm=[1, 0])
    assert (cost(m).flops, cost(m).bytes) == (0, 2 * 4 * 12)
    m = one_op("Reshape", {"x": [3, 4]}, inits={"s": np.array([12])})
    assert (cost(m).flops, cost(m).bytes) == (0, 0)  # a view: free


def test_unknown_op_is_listed_not_fatal() -> None:
    m = one_op("Einsum", {"a": [3, 4], "b": [4, 5]}, equation="ij,jk->ik")
    (c,) = rl.graph_costs(m)
    assert (c.status, c.flops, c.bytes) == ("unknown_op", 0, 4 * (12 + 20 + 15))
    custom = one_op("Foo", {"a": [3]}, domain="com.example")
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    assert rl.graph_costs(custom)[0].status == "unknown_op"
    assert rl.stage_costs(custom)["graph"].uncounted == ("Foo",)


def test_input_shapes_and_errors(tmp_path: Path) -> None:
    m = one_op("Relu", {"x": ["N", 3]})
    with pytest.raises(InputError, match="'x'"):
        rl.graph_costs(m)
    assert cost(m, input_shapes={"N": 5}).flops == 15
    assert cost(m, input_shapes={"x": [7, 3]}).flops == 21
    for bad in ({"Q": 1}, {"y": [1, 3]}, {"x": [1, 2, 3]}):
        with pytest.raises(InputError):
            rl.graph_costs(m, bad)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    for path in (junk, tmp_path / "missing.onnx"):
        with pytest.raises(InputError, match=path.name):
            rl.graph_costs(path)


def test_torch_model_against_flop_counter(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
            self.t = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2, bias=False)
            self.fc = nn.Linear(4 * 16 * 12, 10, bias=False)
            self.q = nn.Parameter(torch.randn(3, 12, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.t(torch.relu(self.c2(torch.relu(self.c1(x)))))  # [2, 4, 16, 12]
            z = torch.matmul(y.reshape(2, 1, 64, 12), self.q)  # batched, broadcast: [2,3,64,5]
            return self.fc(y.flatten(1)).sum() + z.sum()

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 16, 12)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
    costs = rl.graph_costs(path)
    assert all(c.status == "ok" for c in costs)
    assert {"Conv", "ConvTranspose", "MatMul"} <= {c.op_type for c in costs}
    ours = sum(c.flops for c in costs if c.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"))
    # FlopCounterMode counts only matmul-like ops (conv, mm, bmm, addmm), 2 per MAC, no bias
    assert ours == counter.get_total_flops() > 0


@pytest.fixture(scope="module")
def prm_costs() -> list[rl.NodeCost]:
    """Node costs of the packaged prm.onnx."""
    if not (EXPORT / "prm.onnx").is_file():
        pytest.skip("icnseg/assets/export not built")
    return rl.graph_costs(EXPORT / "prm.onnx")


def test_prm_stage_partition(prm_costs: list[rl.NodeCost]) -> None:
    model = onnx.load(str(EXPORT / "prm.onnx"))
    assert [c.index for c in prm_costs] == list(range(len(model.graph.node)))
    assert {c.stage for c in prm_costs} == {"prm_forward", "peaks", "prm_backward"}
    assert all(c.status == "ok" for c in prm_costs)
    stage = {c.name: c.stage for c in prm_costs}
    assert stage["n/classifier"] == stage["n/crm"] == stage["n/backbone_features_0"] == \
        "prm_forward"
    assert stage["n/topk"] == stage["n/seeds"] == stage["n/flat_index"] == stage["n/gauss"] == \
        "peaks"  # flat_index: a constant-only Range that joins its consumer
    assert stage["n/prm"] == stage["n/prm.sum"] == "prm_backward"
    assert {c.stage for c in prm_costs if c.op_type == "ConvTranspose"} == {"prm_backward"}
    totals = rl.stage_costs(EXPORT / "prm.onnx")
    assert sum(s.nodes for s in totals.values()) == len(model.graph.node)
    assert sum(s.flops for s in totals.values()) == sum(c.flops for c in prm_costs)


def test_prm_backward_vs_forward_convs(prm_costs: list[rl.NodeCost]) -> None:
    """The batched backward runs K seeds; each conv's input gradient (a ConvTranspose, or a
    Conv with the kernel flipped for stride 1) has the forward conv's MACs per sample (no
    weight gradient, so not the training 2x). Hence backward = K x the conv's FLOPs (bias
    excluded), and since the PRM rule's forward runs every conv twice (W on U, W+ on
    U - min U), backward/forward conv FLOPs ~ K/2: a hair under it for the forward biases,
    the max-pool adjoints being Resizes (no MACs) where their windows tile the input."""
    meta = {p.key: p.value for p in onnx.load(str(EXPORT / "prm.onnx")).metadata_props}
    assert meta["icnseg.rule"] == "prm"
    k, by_name = int(meta["icnseg.k_max"]), {c.name: c for c in prm_costs}
    main = [c for c in prm_costs if c.op_type == "Conv" and c.stage == "prm_forward"
            and not c.name.endswith(".z")]
    assert len(main) == 7
    for c in main:  # the Z conv: same geometry with W+, no bias
        assert by_name[f"{c.name}.gback"].flops == k * by_name[f"{c.name}.z"].flops
    c, h, w = int(meta["icnseg.num_classes"]), *json.loads(meta["icnseg.crm_size"])
    assert by_name["n/classifier"].flops - by_name["n/classifier.z"].flops == c * h * w  # bias
    fwd = sum(c.flops for c in prm_costs if c.op_type == "Conv" and c.stage == "prm_forward")
    bwd = sum(c.flops for c in prm_costs
              if c.op_type in ("Conv", "ConvTranspose") and c.stage == "prm_backward")
    assert 0.99 * k / 2 <= bwd / fwd <= 1.1 * k / 2


@pytest.mark.parametrize(("rule", "peak_filter", "k"), [
    ("gradient", "median", 1), ("prm", "gaussian", 1), ("gradient", "gaussian", 3)])
def test_stage_rule_on_other_exports(rule: str, peak_filter: str, k: int) -> None:
    """The topological rule holds for both backward rules, both peak filters and K=1 (where
    the seeds [1,C,h,w] have the crm's shape, like several peak-finding tensors)."""
    torch = pytest.importorskip("torch")
    from icnseg.export.prm_graph import build_prm_onnx
    from icnseg.models.prm import PeakConfig, PRMClassifier

    torch.manual_seed(0)
    model = build_prm_onnx(PRMClassifier("tiny", 3).eval(), PeakConfig(filter=peak_filter),
                           (32, 32), k, rule=rule)
    costs = rl.graph_costs(model)
    stage = {c.name: c.stage for c in costs}
    assert stage["n/crm"] == stage["n/classifier"] == "prm_forward"
    assert stage["n/topk"] == stage["n/seeds"] == stage["n/class_scores"] == "peaks"
    assert stage["n/prm"] == "prm_backward" and all(c.status == "ok" for c in costs)
    assert {c.stage for c in costs if c.op_type == "ConvTranspose"} == {"prm_backward"}
    # the backward's first node consumes the seeds
    first = min(c.index for c in costs if c.stage == "prm_backward")
    assert "seeds" in model.graph.node[first].input


def test_icn_stage_and_k() -> None:
    if not (EXPORT / "icn.onnx").is_file():
        pytest.skip("icnseg/assets/export not built")
    costs = rl.graph_costs(EXPORT / "icn.onnx")
    assert {c.stage for c in costs} == {"icn"} and all(c.status == "ok" for c in costs)
    # K is dynamic: the Shape -> ... -> Expand chain is folded, so Expand's output is known
    (expand,) = [c for c in costs if c.op_type == "Expand"]
    assert expand.bytes == 4 * (3 * 96 * 96) * (1 + 32) + 8 * 4
    k8, k16, k32 = (rl.stage_costs(EXPORT / "icn.onnx", {"K": k})["icn"] for k in (8, 16, 32))
    # affine in K: every op but the shape arithmetic (Equal/Where on a 4-vector) runs per instance
    assert k32.flops - k16.flops == 2 * (k16.flops - k8.flops) > 0
    both = rl.export_stage_costs(EXPORT)
    assert list(both) == ["prm_forward", "peaks", "prm_backward", "icn"]
    assert both["icn"] == k32 == rl.stage_costs(EXPORT / "icn.onnx")["icn"]  # default K = k_max


@pytest.mark.parametrize(("name", "row"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"), ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB"), ("NVIDIA A10", "A10"), ("Tesla T4", "T4"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("Orin", "Jetson AGX Orin 64GB"), ("Orin (NVIDIA Jetson Orin Nano Developer Kit)",
                                       "Jetson Orin Nano 8GB"),
    ("NVIDIA Jetson Orin Nano Super Developer Kit", "Jetson Orin Nano 8GB Super"),
    ("Orin NVIDIA Jetson Orin NX", "Jetson Orin NX 16GB"), ("Xavier", "Jetson AGX Xavier"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "Jetson Xavier NX"),
    ("NVIDIA A10G", None), ("NVIDIA GeForce RTX 4090 D", None), ("cpu", None),
])
def test_find_gpu(name: str, row: str | None) -> None:
    spec = rl.find_gpu(name)
    assert (spec.name if spec else None) == row


def test_roofline_arithmetic() -> None:
    toy = rl.GpuSpec("Toy", "toy", fp32_tflops=10.0, fp16_tflops=40.0, bandwidth_gbs=100.0)
    stages = {"mem": rl.StageCost(2_000_000_000, 100_000_000, 20.0, 1),
              "cmp": rl.StageCost(20_000_000_000, 100_000_000, 200.0, 1)}
    mem, cmp = rl.roofline(stages, {"mem": 0.01, "cmp": 0.1}, toy)
    assert mem.flops_per_s == pytest.approx(2e11) and mem.bytes_per_s == pytest.approx(1e10)
    assert mem.compute_fraction == pytest.approx(2e11 / 1e13)
    assert mem.bandwidth_fraction == pytest.approx(0.1)
    assert mem.bound == "memory" and mem.attainable_flops_per_s == pytest.approx(20 * 1e11)
    assert mem.roof_fraction == pytest.approx(2e11 / 2e12)
    assert cmp.bound == "compute" and cmp.attainable_flops_per_s == pytest.approx(1e13)
    assert cmp.roof_fraction == pytest.approx(2e11 / 1e13)
    (half,) = rl.roofline(stages, {"cmp": 0.1}, toy, precision="fp16")
    assert half.bound == "memory" and half.compute_fraction == pytest.approx(2e11 / 4e13)
    (h100,) = rl.roofline(stages, {"mem": 0.01}, "NVIDIA H100 80GB HBM3")
    assert h100.device == "H100 SXM" and h100.bandwidth_fraction == pytest.approx(1e10 / 3.35e12)
    for device in (None, "cpu", "AMD EPYC 7763"):
        (p,) = rl.roofline(stages, {"mem": 0.5}, device)
        assert p.flops_per_s == pytest.approx(4e9) and p.compute_fraction is None
        assert p.bound is None and p.roof_fraction is None and p.device == (device or "cpu")
    both = rl.combine(stages, "mem", "cmp")  # e.g. prm.onnx timed as one "prm" stage
    assert (both.flops, both.bytes, both.nodes) == (22_000_000_000, 200_000_000, 2)
    assert both.intensity == pytest.approx(110.0)
    for args in (({"mem": 0.0},), ({"other": 1.0},), ({"mem": 1.0}, toy, "int8")):
        with pytest.raises(ConfigError):
            rl.roofline(stages, *args)
