"""ONNX Runtime's per-node profile, summed by operator class (docedge.calibration.node_profile)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from docedge.calibration.node_profile import NodeProfile, conv_bound, profile_nodes


@pytest.fixture(scope="module")
def dw_pw_model(tmp_path_factory):
    """img (N, 3, 16, 16) -> depthwise 3x3 conv (group 3) -> pointwise 1x1 conv to 8 -> Relu."""
    rng = np.random.default_rng(0)
    w_dw = numpy_helper.from_array(rng.standard_normal((3, 1, 3, 3)).astype(np.float32), "w_dw")
    w_pw = numpy_helper.from_array(rng.standard_normal((8, 3, 1, 1)).astype(np.float32), "w_pw")
    nodes = [
        helper.make_node("Conv", ["img", "w_dw"], ["a"], name="dw", group=3, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w_pw"], ["b"], name="pw"),
        helper.make_node("Relu", ["b"], ["feats"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [None, 8, 16, 16])],
        [w_dw, w_pw],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("prof") / "m.onnx"
    onnx.save(model, str(path))
    return path


def test_convolutions_are_split_into_depthwise_and_pointwise(dw_pw_model):
    prof = profile_nodes(dw_pw_model, batch=2, threads=1, runs=3, size=16)
    kinds = set(prof.per_image_us)
    assert any(k.endswith("-depthwise") for k in kinds), kinds
    assert any(k.endswith("-pointwise") for k in kinds), kinds
    assert sum(n for k, n in prof.nodes.items() if k.endswith("-depthwise")) == 1
    assert prof.total_us >= prof.conv_us() > 0
    assert set(prof.to_json()) >= {"per_image_us", "conv_us_per_image", "total_us_per_image"}


def test_the_bound_is_fp32_total_over_int8_convolution_time():
    fp32 = NodeProfile("a", 32, 1, 10, {"Conv-pointwise": 240.0, "Conv-depthwise": 120.0,
                                          "ReorderOutput": 40.0})  # fmt: skip
    int8 = NodeProfile("b", 32, 1, 10, {"QLinearConv-pointwise": 150.0, "Conv-depthwise": 150.0,
                                          "Mul": 200.0, "QuantizeLinear": 100.0})  # fmt: skip
    assert int8.conv_us() == 300.0
    assert conv_bound(fp32, int8) == pytest.approx(400.0 / 300.0)


def test_a_bare_onnx_file_is_benchmarked_like_a_bundle_precision(seeded_bundle):
    from docedge.calibration.benchmark import EngineSpec, run_benchmark

    onnx_file = str(seeded_bundle / "model_fp32.onnx")
    res = run_benchmark([EngineSpec("file", "onnx-file", onnx_file)], batch_sizes=(2,),
                        rounds=1, seconds=0.05, gemm=False)  # fmt: skip
    assert not [r for r in res.rounds if "error" in r]
    assert [(r["engine"], r["batch"]) for r in res.summary] == [("file", 2)]
